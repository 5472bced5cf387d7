"""Training figures: the matching behind the confusion matrix and PR curve on boxes placed by
hand (counts exact), and the four files written for a run directory."""
import numpy as np
import pandas as pd

from yolocompress.data.dataset import load_data_config
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.darknet.loader import load_model
from yolocompress.engine.figures import confusion, loss_columns, match, pr_points, write_training_figures

GT = np.array([[0, 10, 10, 20, 20], [1, 50, 50, 10, 10]], np.float32)            # cls, x, y, w, h


def test_matching_counts_hits_misses_and_wrong_classes():
    det = np.array([[10, 10, 30, 30, 0.9, 0],        # box 0, right class
                    [50, 50, 60, 60, 0.8, 0],        # box 1, wrong class
                    [90, 90, 99, 99, 0.7, 1]], np.float32)   # nothing there
    matched, hit = match(GT, det)
    assert matched.tolist() == [0, -1, -1] and hit.tolist() == [True, False]
    m = confusion({0: GT}, {0: det}, n_classes=2)
    assert m.tolist() == [[1, 0, 0],      # class 0: found as 0
                          [1, 0, 0],      # class 1: detected as 0 (its own row, column 0)
                          [0, 1, 0]]      # background: one false detection of class 1
    recall, precision = pr_points({0: GT}, {0: det}, cls=0)
    assert recall.tolist() == [1.0, 1.0] and precision.tolist() == [1.0, 0.5]


def test_loss_columns_are_those_the_loop_writes_before_time():
    h = pd.DataFrame([{"epoch": 1, "lr": 0.01, "box": 1, "obj": 2, "cls": 3, "total": 6, "time_s": 1, "map50": 0.1}])
    assert loss_columns(h) == ["box", "obj", "cls", "total"]


def test_a_run_directory_gets_its_four_figures(tmp_path):
    make_shapes(tmp_path / "d", ShapesConfig(n_train=2, n_val=3, img_size=64, seed=1), workers=1, progress=False)
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame([{"epoch": 1, "lr": 0.01, "box": 1.0, "total": 1.0, "time_s": 1.0, "map50": 0.0, "map": 0.0}]).to_csv(
        run / "history.csv", index=False)
    data = load_data_config(tmp_path / "d" / "data.yaml")
    paths = write_training_figures(load_model("teach", classes=data.nc), data, run, img_size=64)
    assert [p.name for p in paths] == ["results.png", "pr_curve.png", "confusion_matrix.png", "val_predictions.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_plot_bounded_draws_each_object_once_with_a_legend():
    """Two positive anchors on one object: one ground-truth box, two teacher and two student boxes
    (red where the student learns, grey where not), and the legend names all four kinds."""
    from yolocompress.teach import viz
    rows = [{"image": 0, "gt": (20.0, 20.0, 10.0, 10.0), "teacher": (21.0, 20.0, 9.0, 10.0),
             "student": (25.0, 22.0, 8.0, 8.0), "learn": True},
            {"image": 0, "gt": (20.0, 20.0, 10.0, 10.0), "teacher": (19.0, 21.0, 11.0, 9.0),
             "student": (20.0, 20.0, 10.0, 10.0), "learn": False}]
    fig = viz.plot_bounded(np.zeros((40, 40, 3)), rows)
    ax = fig.axes[0]
    colours = [p.get_edgecolor()[:3] for p in ax.patches]
    assert len(ax.patches) == 5 and colours.count((1.0, 1.0, 1.0)) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["ground truth", "teacher", "student: learns", "student: does not"]
