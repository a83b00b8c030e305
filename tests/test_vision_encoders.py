"""Gazed SigLIP tower vs upstream's (fixtures in ../shared/fixtures/upstream/siglip) and vs stock SigLIP.

Each fixture tower is a *stock* SigLIP checkpoint; upstream ran its gazed tower on the reference
gazes (block_causal, sdpa). Rows at padded slots are meaningless and are not compared; upstream's
pooler output is a contract only where no slot is padded (its head pools over padded rows, ours
hides them, see siglip/modeling.py).
"""
import pytest
import torch
from safetensors.torch import load_file
from transformers import SiglipVisionModel as StockSiglipVisionModel

from autogaze.types import Gazes
from autogaze.vision_encoders.siglip import SiglipVisionModel

TOL = 1e-4
STOCK_TOL = 1e-5
CALLS = {  # fixture call -> (tower folder, scales, gaze prefix in ../reference.safetensors)
    "p16_224.greedy_ratio0.1": ("p16_224", "32+64+112+224", "greedy_ratio0.1"),
    "p16_224.greedy_ratio0.75_req0.7": ("p16_224", "32+64+112+224", "greedy_ratio0.75_req0.7"),
    "p14_392.anyres_392_p14": ("p14_392", "56+112+196+392", "anyres_392_p14"),
}
TOWER_SCALES = {"p16_224": "32+64+112+224", "p14_392": "56+112+196+392"}


@pytest.fixture(scope="module")
def siglip_ref(fixtures_dir):
    return load_file(str(fixtures_dir / "siglip" / "reference.safetensors"))


def _tower(fixtures_dir, name: str) -> SiglipVisionModel:
    return SiglipVisionModel.from_pretrained(fixtures_dir / "siglip" / name, scales=TOWER_SCALES[name]).eval()


def _gazing_info(reference, prefix: str) -> dict:
    return {k: reference[f"{prefix}.{k}"] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}


@pytest.mark.parametrize("call", list(CALLS))
def test_last_hidden_state_matches_upstream(call, fixtures_dir, reference, siglip_ref):
    tower_name, _, gaze_prefix = CALLS[call]
    tower = _tower(fixtures_dir, tower_name)
    info = _gazing_info(reference, gaze_prefix)
    with torch.no_grad():
        out = tower(siglip_ref[f"{tower_name}.video"], gazing_info=info)
    real = ~info["if_padded_gazing"]
    want = siglip_ref[f"{call}.last_hidden_state"]
    assert out.last_hidden_state.shape == want.shape  # one row per slot, padded rows included
    err = (out.last_hidden_state - want)[real].abs().max().item()
    print(f"{call}: last_hidden_state max abs err {err:.2e} over {int(real.sum())} real rows")
    assert err <= TOL

    pad = bool(info["if_padded_gazing"].any())
    if not pad:
        perr = (out.pooler_output - siglip_ref[f"{call}.pooler_output"]).abs().max().item()
        print(f"{call}: pooler_output max abs err {perr:.2e}")
        assert perr <= TOL
    else:
        # Ours pools over the real rows only: the same as pooling a clip holding just those rows.
        rows = out.last_hidden_state[real][None]
        alone = tower.pool(rows, torch.zeros(rows.shape[:2], dtype=torch.bool))
        assert torch.allclose(out.pooler_output, alone, atol=1e-6)


def test_gazes_dataclass_equals_dict(fixtures_dir, reference, siglip_ref):
    tower = _tower(fixtures_dir, "p16_224")
    info = _gazing_info(reference, "greedy_ratio0.75_req0.7")
    gazes = Gazes(info["gazing_pos"], info["if_padded_gazing"], info["num_gazing_each_frame"], 265)
    # Upstream's pads may hold out-of-frame ids; Gazes' pads must be in range, so fix them first.
    frame = torch.repeat_interleave(torch.arange(16), info["num_gazing_each_frame"])[None]
    gazes.ids = torch.where(gazes.is_padded, frame * 265, gazes.ids)
    with torch.no_grad():
        a = tower(siglip_ref["p16_224.video"], gazing_info=info)
        b = tower(siglip_ref["p16_224.video"], gazing_info=gazes)
    real = ~gazes.is_padded
    assert torch.equal(a.last_hidden_state[real], b.last_hidden_state[real])
    assert torch.equal(a.pooler_output, b.pooler_output)


@pytest.mark.parametrize("tower_name", ["p16_224", "p14_392"])
def test_full_frame_equals_stock_tower(tower_name, fixtures_dir, siglip_ref):
    """Frame 0 with every patch of the largest scale gazed is the stock tower on that frame."""
    tower = _tower(fixtures_dir, tower_name)
    stock = StockSiglipVisionModel.from_pretrained(fixtures_dir / "siglip" / tower_name,
                                                   attn_implementation="sdpa").eval()
    P, n = tower.gazing.tokens_per_frame, tower.gazing.grid_sides[-1] ** 2
    ids = torch.arange(P - n, P)[None]  # the largest scale's patches, row-major
    info = {"gazing_pos": ids, "if_padded_gazing": torch.zeros_like(ids, dtype=torch.bool),
            "num_gazing_each_frame": torch.tensor([n])}
    frame0 = siglip_ref[f"{tower_name}.video"][:, :1]  # [1, 1, 3, S, S]
    with torch.no_grad():
        ours = tower(frame0, gazing_info=info)
        ref = stock(frame0[:, 0], interpolate_pos_encoding=True)
    err = (ours.last_hidden_state - ref.last_hidden_state).abs().max().item()
    perr = (ours.pooler_output - ref.pooler_output).abs().max().item()
    ferr = (ours.last_hidden_state - siglip_ref[f"{tower_name}.full_frame0.last_hidden_state"]).abs().max().item()
    print(f"{tower_name} full frame 0: vs stock {err:.2e} (pooler {perr:.2e}), vs upstream {ferr:.2e}")
    assert err <= STOCK_TOL and perr <= STOCK_TOL and ferr <= STOCK_TOL


def test_loads_stock_checkpoint_without_new_parameters(fixtures_dir):
    path = fixtures_dir / "siglip" / "p14_392"
    ours = SiglipVisionModel.from_pretrained(path, scales="56+112+196+392")
    stock = StockSiglipVisionModel.from_pretrained(path)
    assert ours.state_dict().keys() == stock.state_dict().keys()
    assert all(torch.equal(v, stock.state_dict()[k]) for k, v in ours.state_dict().items())
    assert ours.gazing.tokens_per_frame == 16 + 64 + 196 + 784
