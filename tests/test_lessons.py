"""plan_lite.lessons: the helpers shared by the lesson notebooks."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from plan_lite.lessons import ensure_dataset, is_int, need, show  # noqa: E402


def test_need_raises_value_error_with_message():
    need(True, "never shown")
    with pytest.raises(ValueError, match=r"^invalid parameter: seed must be an int >= 0, got -1$"):
        need(False, "seed must be an int >= 0, got -1")


def test_is_int_rejects_bool_and_float():
    assert is_int(0) and is_int(-3)
    assert not is_int(True) and not is_int(1.0) and not is_int("1")


def test_show_saves_png_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    show(fig, tmp_path, "curve")
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert not plt.fignum_exists(fig.number)


def test_show_displays_the_png_not_the_figure(tmp_path, monkeypatch):
    """The displayed object is the saved PNG (an image/png output whatever the matplotlib/IPython versions)."""
    import base64

    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert show(fig, tmp_path, "curve") is None  # a cell ending in show(...) prints no repr
    path = tmp_path / "curve.png"
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    fmt, _ = IPython.core.formatters.DisplayFormatter().format(shown[0])
    assert base64.b64decode(fmt["image/png"]) == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]  # no temporary file left behind


def test_ensure_dataset_reuses_existing(tmp_path, capsys):
    data = tmp_path / "data_in"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"name": "x"}))
    out = tmp_path / "out"
    assert ensure_dataset(data, out, n_cases=3, seed=0) == data
    assert not (out / "data").exists() and capsys.readouterr().out == ""


def test_ensure_dataset_generates_once_when_missing(tmp_path, capsys):
    out = tmp_path / "out"
    path = ensure_dataset(tmp_path / "missing", out, n_cases=3, seed=0, shape=(16, 48, 48))
    assert path == out / "data"
    assert (path / "dataset.json").exists() and (path / "cases.csv").exists()
    assert len(list((path / "labelsTr").glob("*.nii.gz"))) == 3
    assert capsys.readouterr().out.count("\n") == 1  # one line
    stamp = (path / "dataset.json").stat().st_mtime_ns
    assert ensure_dataset(tmp_path / "missing", out, n_cases=3, seed=0, shape=(16, 48, 48)) == path
    assert (path / "dataset.json").stat().st_mtime_ns == stamp and capsys.readouterr().out == ""


def test_check_common_names_the_bad_parameter():
    from plan_lite.lessons import check_common

    check_common("d", "o", 0, 5, min_cases=5, preset="tiny")
    for args, kw, name in ((("", "o", 0, 5), {}, "data_dir"), (("d", "o", -1, 5), {}, "seed"),
                           (("d", "o", 0, 2), {"min_cases": 3}, "n_cases must be an int >= 3"),
                           (("d", "o", 0, 5), {"preset": "huge"}, "preset")):
        with pytest.raises(ValueError, match=name):
            check_common(*args, **kw)
