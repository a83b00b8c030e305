"""Token space and any-resolution tiling/stitching map ids to the right pixels."""
import pytest
import torch
import torch.nn.functional as F

from autogaze.models.autogaze import AutoGaze, TokenSpace
from autogaze.models.autogaze.anyres import AnyResPlan, gazes_from_mask
from autogaze.models.autogaze.config import tiny_config
from autogaze.types import GazeRollout, Gazes

MODEL = TokenSpace((224, 32, 112, 64), 16)  # sorted on construction
TARGET = dict(target_scales=[56, 112, 196, 392], target_patch_size=14)


def test_token_space_layout():
    assert MODEL.scales == (32, 64, 112, 224)
    assert MODEL.counts == [4, 16, 49, 196] and MODEL.offsets == [0, 4, 20, 69] and MODEL.tokens_per_frame == 265
    # 3rd patch of the 5th frame -> 4 * 265 + 2 = 1062 (QUICK_START's 1327 is an arithmetic slip)
    g = Gazes(torch.tensor([[1062]]), torch.tensor([[False]]), torch.tensor([0, 0, 0, 0, 1]), 265)
    assert g.local_ids().item() == 2 and g.to_mask()[0, 4, 2] == 1
    boxes = MODEL.pixel_boxes(torch.tensor([0, 3, 4, 20, 69, 264]))
    assert boxes.tolist() == [[0, 0, 112, 112], [112, 112, 224, 224], [0, 0, 56, 56], [0, 0, 32, 32],
                              [0, 0, 16, 16], [208, 208, 224, 224]]


def test_no_adaptation_when_target_equals_model():
    assert AnyResPlan.make(MODEL, 224, [32, 64, 112, 224], 16) is None
    assert AnyResPlan.make(MODEL, 224) is None
    with pytest.raises(ValueError, match="square with side"):
        AnyResPlan.make(MODEL, 300, **TARGET)
    with pytest.raises(ValueError, match="4 scales"):
        AnyResPlan.make(MODEL, 392, [196, 392], 14)


def test_stitched_ids_cover_the_same_pixels_as_tile_ids():
    plan = AnyResPlan.make(MODEL, 392, **TARGET)
    assert plan.n == 2 and plan.tile_px == 196 and plan.target.tokens_per_frame == 1060
    g = torch.Generator().manual_seed(0)
    tile_mask = (torch.rand(2 * 4, 3, 265, generator=g) < 0.1).float()  # [(B i j), T, P]
    target = plan.stitch(gazes_from_mask(tile_mask))
    got = target.to_mask()  # [B, T, 1060]
    for row in range(8):
        b, i, j = row // 4, (row // 2) % 2, row % 2
        for t in range(3):
            local = tile_mask[row, t].nonzero().flatten()
            # tile boxes in tile pixels, shifted by the tile's origin in the 392 frame
            boxes = MODEL.pixel_boxes(local, frame_size=196) + torch.tensor([j, i, j, i]) * 196.0
            tgt_local = [k for k in got[b, t].nonzero().flatten().tolist()
                         if tuple(plan.target.pixel_boxes(torch.tensor(k), 392).tolist()) in
                         {tuple(x) for x in boxes.tolist()}]
            assert len(tgt_local) == local.numel()
    # nothing else was gazed and ids are ascending within each frame
    assert got.sum() == tile_mask.sum()
    for t in range(3):
        ids = target.local_ids()[:, target.frame_index() == t]
        pads = target.is_padded[:, target.frame_index() == t]
        for b in range(2):
            real = ids[b][~pads[b]]
            assert torch.equal(real, real.sort().values)


def test_textured_object_gets_gazed_in_its_tile():
    """End to end through the dict call, with a stand-in gazer that looks at texture: it gazes every
    finest-scale cell of a tile whose pixels vary. Random weights cannot be trusted to find the object,
    so this checks the plumbing: tile split, encoder input, id layout and stitching."""
    torch.manual_seed(0)
    model = AutoGaze(tiny_config(scales="32+64+112+224", num_vision_tokens_each_frame=265,
                                 gaze_model_config=dict(input_img_size=224))).eval()
    video = torch.zeros(1, 2, 3, 392, 392)
    y0, y1, x0, x1 = 230, 300, 250, 330  # inside tile (i=1, j=1)
    video[..., y0:y1, x0:x1] = torch.randn(1, 2, 3, y1 - y0, x1 - x0)

    def texture_gazer(tiles, budget, **kwargs):
        BNN, T = tiles.shape[:2]
        tiles = F.interpolate(tiles.flatten(0, 1), size=(224, 224), mode="bicubic", align_corners=False)
        var = tiles.unflatten(0, (BNN, T)).unfold(3, 16, 16).unfold(4, 16, 16).var(dim=(-1, -2)).sum(2)
        mask = torch.zeros(BNN, T, 265)
        mask[..., 69:] = (var > 1e-3).flatten(2).float()  # finest scale, 14 x 14 cells
        mask[..., 0] = (mask.sum(-1) == 0).float()  # flat tiles: one coarse gaze, kept off the finest grid
        gz = gazes_from_mask(mask)
        return GazeRollout(gz, budget=budget)

    model.generate = texture_gazer
    out = model({"video": video}, gazing_ratio=1.0, generate_only=True, **TARGET)
    finest = out["gazing_mask"][3][0].view(2, 28, 28)  # 14-px cells of the 392 frame
    rows = torch.arange(28) * 14
    touches = ((rows + 14 > y0) & (rows < y1))[:, None] & ((rows + 14 > x0) & (rows < x1))[None, :]
    for t in range(2):
        # the object's cells, widened by one cell for the bicubic resize of the tile
        near = F.max_pool2d(touches[None, None].float(), 3, 1, 1)[0, 0] > 0
        assert finest[t][touches].all()
        assert not finest[t][~near].any()
        # the three flat tiles each got their coarse fallback gaze (scale 56: 2 x 2 cells per tile)
        assert out["gazing_mask"][0][0, t].view(4, 4)[::2, ::2].flatten().tolist() == [1, 1, 1, 0]
