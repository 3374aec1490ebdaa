import pytest

from dreamprm.domains import MMPR_DOMAINS, PAPER_WEIGHTS, canonical, domain_table


def test_fifteen_domains_with_paper_weights():
    assert len(MMPR_DOMAINS) == 15
    assert PAPER_WEIGHTS["m3cot"] == 1.49 and PAPER_WEIGHTS["ai2d"] == 0.55
    assert abs(sum(PAPER_WEIGHTS.values()) / 15 - 1) < 0.03  # the paper's weights average about 1


def test_canonical_spellings():
    assert canonical("CLEVR") == "CLEVR_math" and canonical("clevr_math") == "CLEVR_math"
    assert canonical(" UniGeo ") == "unigeo_calc" and canonical("AI2D") == "ai2d"
    assert canonical("my_domain") == "my_domain"


def test_domain_table_from_data_and_unknown_domain_error():
    assert domain_table(["ai2d", "AI2D", "dvqa"]) == ["ai2d", "dvqa"]
    assert domain_table(["x", "y"]) == ["x", "y"]
    with pytest.raises(ValueError, match="unknown domain.*chartqaa"):
        domain_table(["chartqa", "chartqaa"], allowed=MMPR_DOMAINS)
