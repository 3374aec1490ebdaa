"""Exact tree-packed PRM scoring: every step prefix of a group of samples in two forward passes.

Used by best-of-N scoring (many candidates per question) and by the upper level of the bi-level loop (all
prefixes of a meta record): the numbers are those of one forward pass per prefix, the work is far less.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .prm import PRM, Sample


def _trie(seqs: list[list[int]]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Token trie of `seqs`: (token, parent node, depth) per node in creation order (parents come first) and
    each sequence's last node."""
    ids, parent, depth, last = [], [], [], []
    child: dict = {}
    for seq in seqs:
        node = -1
        for d, t in enumerate(seq):
            nxt = child.get((node, t))
            if nxt is None:
                nxt = child[(node, t)] = len(ids)
                ids.append(t)
                parent.append(node)
                depth.append(d)
            node = nxt
        last.append(node)
    return ids, parent, depth, last


class TreeScorer:
    """`score(samples)` gives what one forward pass per step prefix gives, in two passes per question.

    Every prefix is its own token sequence, exactly as the training encoder builds it
    (`PRMEncoder.sequences`), read at its last token. Samples with the same image and question form a
    group; their sequences share a trunk (system prompt, image, question, often the first words).
    Pass 1 runs the trunk once, vision tower included, and keeps its keys and values. Pass 2 runs one row per
    candidate: the token trie of the candidate's prefix sequences after the trunk (shared tokens once), each
    token attending to the trunk and to its own ancestors, at the M-RoPE position it has in its own sequence.
    Only read positions go through the vocabulary projection.
    """

    def __init__(self, prm: PRM):
        self.prm, self.enc = prm, prm.encoder
        self.image_id, self.pad_id = self.enc.image_id, self.enc.pad_id

    def score(self, samples: list[Sample], grad: bool = False) -> torch.Tensor:
        """One score per prefix, flattened in sample order; `grad=True` keeps the graph (training)."""
        with torch.set_grad_enabled(grad), torch.inference_mode(not grad):
            return self._score(samples)

    def _score(self, samples: list[Sample]) -> torch.Tensor:
        groups: dict = {}  # (image key, question) -> sample indices
        for i, s in enumerate(samples):
            if not s.prefixes:
                raise ValueError(f"sample without step prefixes: {s.question[:60]!r}")
            key = s.image if isinstance(s.image, (str, Path)) or s.image is None else id(s.image)
            groups.setdefault((key, s.question), []).append(i)
        out: list = [None] * len(samples)
        features: dict = {}  # image key -> vision tower output: each distinct image once per call
        for (key, _), idx in groups.items():
            for i, sc in zip(idx, self._group([samples[i] for i in idx], key, features)):
                out[i] = sc
        return torch.cat(out)

    def _group(self, group: list[Sample], key, features: dict) -> list[torch.Tensor]:
        model, dev = self.prm.backbone, self.prm.device
        inner = model.model
        grid, n_tok, extra = None, 0, {}
        if key is not None:
            pv, grid = self.enc.image_inputs(group[0].image)
            n_tok = int(grid.prod()) // self.enc.merge
            if key not in features:
                features[key] = inner.get_image_features(pv.to(dev, model.dtype), grid.to(dev), return_dict=True)
            extra["mm_encoder_outputs"] = {"image": features[key]}
        seqs = self.enc.sequences(group, [n_tok] * len(group))
        flat = [q for ss in seqs for q in ss]
        # trunk: the common beginning, leaving every sequence at least its last token for pass 2
        T = min(len(q) for q in flat) - 1
        first = flat[0]
        for q in flat[1:]:
            T = next((j for j in range(T) if q[j] != first[j]), T)
        trunk = torch.tensor(first[:T], dtype=torch.long)
        pos = self._positions(max(flat, key=len), grid)
        if n_tok and int((trunk == self.image_id).sum()) != n_tok:
            raise RuntimeError("the image is not inside the shared trunk; use --packing none")
        # pass 1: the trunk once (image features enter here), keys and values kept
        past = inner(input_ids=trunk[None].to(dev), position_ids=pos[:, None, :T].to(dev), use_cache=True,
                     **extra).past_key_values if T else None
        # pass 2: one row per candidate, the trie of its sequences after the trunk
        tries = [_trie([q[T:] for q in ss]) for ss in seqs]
        B, L = len(tries), max(len(t[0]) for t in tries)
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        positions = torch.zeros((3, B, L), dtype=torch.long)
        allowed = np.zeros((B, L, T + L), dtype=bool)
        allowed[:, :, :T] = True  # every token sees the whole trunk
        rows, cols = [], []
        for b, (tok, parent, depth, last) in enumerate(tries):
            n = len(tok)
            input_ids[b, :n] = torch.tensor(tok)
            positions[:, b, :n] = pos[:, T + torch.tensor(depth)]
            a = allowed[b, :, T:]
            for j, p in enumerate(parent):  # a token's ancestors: its parent's ancestors and the parent
                if p >= 0:
                    a[j] = a[p]
                a[j, j] = True
            for j in range(n, L):  # padding sees itself (a row of nothing would be NaN)
                a[j, j] = True
            rows += [b] * len(last)
            cols += last
        if (input_ids == self.image_id).any():
            raise RuntimeError("image tokens after the shared trunk; use --packing none")
        if past is not None:
            past.batch_repeat_interleave(B)
        dtype = model.dtype
        mask = torch.full((B, 1, L, T + L), torch.finfo(dtype).min, dtype=dtype)
        mask.masked_fill_(torch.from_numpy(allowed)[:, None], 0.0)
        hidden = inner(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                       past_key_values=past, use_cache=past is not None).last_hidden_state
        # the PRM's readout (PRM.forward): vocabulary logits at the read positions -> head -> sigmoid
        logits = model.lm_head(hidden[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)])
        scores = torch.sigmoid(self.prm.head(logits.float())).squeeze(-1)
        return list(torch.split(scores, [len(s.prefixes) for s in group]))

    def _positions(self, seq: list[int], grid) -> torch.Tensor:
        """(3, len(seq)) M-RoPE positions of the longest sequence. Every sequence of a group shares the trunk,
        image included, so a token's position depends on its depth only and this one sequence serves all."""
        if grid is None:
            return torch.arange(len(seq)).expand(3, -1)
        t = torch.tensor(seq)[None]
        pos, _ = self.prm.backbone.model.get_rope_index(t, mm_token_type_ids=(t == self.image_id).long(),
                                                       image_grid_thw=grid)
        return pos[:, 0]
