"""Parameters and GFLOPs of the five upstream architectures (80 classes, 416 x 416)."""
import json

import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.cli.main import main
from yolocompress.darknet.model import Darknet
from yolocompress.deploy.footprint import count_params, flops_by_stride, gflops, latency, layer_table
from yolocompress.darknet.loader import load_model

FIGURES = {  # cfg: (params, GFLOPs = 2 x conv MACs) at 416
    "yolov3": (61_949_149, 65.864),
    "yolov3-spp": (62_998_749, 66.218),
    "yolov3-tiny": (8_852_366, 5.565),
    "yolov4": (64_363_101, 60.105),
    "yolov4-tiny": (6_056_606, 6.908),
}


@pytest.mark.parametrize("name", FIGURES)
def test_params_and_gflops(name):
    with torch.device("meta"):
        model = Darknet(zoo.blocks(name, 80))
    params, gf = FIGURES[name]
    assert count_params(model) == params
    assert gflops(model, 416) == pytest.approx(gf, abs=5e-4)


def test_layer_table_adds_up():
    with torch.device("meta"):
        model = Darknet(zoo.blocks("yolov3-tiny", 80))
    table = layer_table(model, 416)
    assert len(table) == 24 and table["params"].sum() == 8_852_366
    assert table["GFLOPs"].sum() == pytest.approx(5.565, abs=5e-4)
    assert table.loc[0, "output"] == "16 x 416 x 416" and table.loc[11, "output"] == "512 x 13 x 13"


def test_info_cli_json(capsys):
    assert main(["info", "yolov4", "--json", "--img-size", "416"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == 162 and out["params"] == 64363101
    assert out["gflops"] == pytest.approx(60.105, abs=5e-4)
    assert out["heads"] == [[255, 52, 52], [255, 26, 26], [255, 13, 13]]


def test_info_cli_errors(capsys, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=x\n")
    assert main(["info", str(bad)]) == 2
    assert "bad.cfg:5: filters= expects an integer" in capsys.readouterr().err
    assert main(["info", "teach", "--img-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_latency_reports_median():
    model = Darknet(zoo.blocks("yolov3-tiny", 80))
    r = latency(model, img_size=64, runs=3, warmup=1, threads=1)
    assert r["ms"] > 0 and r["threads"] == 1 and r["runs"] == 3 and r["p90_ms"] >= r["ms"] * 0.5


def test_flops_by_stride_shows_where_the_cost_sits():
    """FLOP counts are integers, so the shares are exact. In YOLOv3 every residual block costs the
    same (channels double as the resolution halves), so the cost follows the block counts 1-2-8-8-4:
    a third each at strides 8 and 16. The teaching model built with YOLOv3's depths has the same shape."""
    with torch.device("meta"):
        v3 = load_model("yolov3", classes=80)
        teach = load_model(zoo.blocks("teach"))          # the tutorial's model: width 8, depths 1-2-8-8-4
    a, b = flops_by_stride(v3, 416), flops_by_stride(teach, 128)
    assert a["GFLOPs"].sum() == pytest.approx(65.864, abs=5e-4) and a["share"].sum() == pytest.approx(1.0)
    assert a["stride"].tolist() == [1, 2, 4, 8, 16, 32] and a.loc[3, "resolution"] == "52 x 52"
    assert [round(x, 3) for x in a["share"]] == [0.005, 0.051, 0.078, 0.327, 0.325, 0.215]
    assert (a["share"][1:] - b["share"][1:]).abs().max() < 0.01
