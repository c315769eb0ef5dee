"""`kiln browse-dataset`: augmented training images with their boxes, written as PNGs."""

from __future__ import annotations

from kiln.cli import main


def test_browse_dataset_writes_requested_number_of_pngs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KILN_DATA", str(tmp_path / "data"))
    out = tmp_path / "vis"
    assert main(["browse-dataset", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--output-dir", str(out),
                 "--num", "3", "--cfg-options", "data.train.num_images=4", "data.train.image_size=64"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 3 and all(f.read_bytes()[:4] == b"\x89PNG" for f in files)
    assert "wrote 3 images" in capsys.readouterr().out


def test_browse_dataset_bad_num_exits_2(tmp_path, capsys):
    assert main(["browse-dataset", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--output-dir",
                 str(tmp_path), "--num", "0"]) == 2
    assert "--num" in capsys.readouterr().err
