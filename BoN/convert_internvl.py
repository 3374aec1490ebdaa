"""Convert a remote-code InternVL checkpoint (VisualPRM-8B, DreamPRM-1.5, InternVL chat models) to the
transformers-native layout this repo loads (`dreamprm.convert`); the result is scored as a generative PRM:

    python BoN/convert_internvl.py --src models/DreamPRM-1.5 --out models/dreamprm-1.5-hf
    python BoN/score.py --prm models/dreamprm-1.5-hf --name dreamprm-1.5
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.convert import convert


@dataclass
class ConvertConfig(StageArgs):
    """Convert a remote-code InternVL checkpoint to transformers' InternVLForConditionalGeneration."""
    src: str = field(default="", metadata={"help": "directory of the remote-code checkpoint (config.json with "
                                                   "llm_config and vision_config, safetensors weights)"})
    tokenizer: str = field(default="", metadata={
        "help": "a transformers-format tokenizer directory, when the checkpoint's own needs remote code (InternLM2)"})
    as_prm: bool = field(default=True, metadata={
        "help": "write prm_config.json marking a generative PRM (--no_as_prm for a policy model)"})
    system_prompt_file: str = field(default="", metadata={
        "help": "text file with the system prompt the PRM was trained with (default: this repo's)"})
    dtype: str = field(default="auto", metadata={"help": "auto (as stored), bfloat16, float16 or float32"})


def main(argv=None):
    cfg = parse_args(ConvertConfig, argv)
    if not cfg.src or not cfg.out:
        raise SystemExit("--src and --out are required")
    system = cfg.resolve(cfg.system_prompt_file).read_text().strip() if cfg.system_prompt_file else None
    out = cfg.output(cfg.out, directory=True)
    convert(cfg.resolve(cfg.src), out, cfg.resolve(cfg.tokenizer) if cfg.tokenizer else None, cfg.as_prm, system,
            cfg.dtype)
    print(f"wrote {out} (transformers-native InternVL{', generative PRM' if cfg.as_prm else ''})")


if __name__ == "__main__":
    main()
