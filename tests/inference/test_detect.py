"""``modyolo detect`` on folders with a corrupt image and a video, .txt lists and globs."""

from __future__ import annotations

import cv2
import numpy as np

from tiny_run import run_cli


def _sources(shapes, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted((shapes.parent / "images" / "val").glob("*.jpg"))[:2]:
        (src / f.name).write_bytes(f.read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    writer = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    for i in range(3):
        writer.write(np.full((64, 96, 3), 60 * i, np.uint8))
    writer.release()
    return src


def test_detect_folder_with_video_and_bad_image(checkpoint, shapes, tmp_path, capsys):
    src = _sources(shapes, tmp_path)
    rc, out, err = run_cli(
        [
            "detect",
            "--weights",
            checkpoint,
            "--source",
            src,
            "--img",
            "64",
            "--conf-thres",
            "0.001",
            "--max-det",
            "5",
            "--save-txt",
            "--save-conf",
            "--save-crop",
            "--project",
            tmp_path / "runs",
        ],
        capsys,
    )
    assert rc == 0
    assert "broken.jpg: skipped" in err and "1 input(s) could not be read" in err
    assert "image 4/4" in out and f"{src / 'val_00001.jpg'}:" in out and "ms\n" in out
    assert "video 2/4 (3/3)" in out
    run = tmp_path / "runs" / "exp"
    assert {p.name for p in run.iterdir()} >= {"val_00000.jpg", "val_00001.jpg", "clip.avi", "labels"}
    cap = cv2.VideoCapture(str(run / "clip.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    labels = sorted(p.stem for p in (run / "labels").glob("*.txt"))
    assert labels == ["clip_1", "clip_2", "clip_3", "val_00000", "val_00001"]
    rows = (run / "labels" / "val_00000.txt").read_text().splitlines()
    assert 0 < len(rows) <= 5 and all(len(r.split()) == 6 for r in rows)
    assert (run / "crops").is_dir()
    annotated = cv2.imread(str(run / "val_00000.jpg"))
    original = cv2.imread(str(src / "val_00000.jpg"))
    assert annotated.shape == original.shape


def test_detect_txt_list_glob_nosave_classes(checkpoint, shapes, tmp_path, capsys):
    val = shapes.parent / "images" / "val"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{val / 'val_00000.jpg'}\n# a comment\n{val / 'val_00002.jpg'}\n")
    for source in (listing, str(val / "val_0000[13].jpg")):
        rc, out, _ = run_cli(
            [
                "detect",
                "--weights",
                checkpoint,
                "--source",
                source,
                "--img",
                "64",
                "--nosave",
                "--conf-thres",
                "0.001",
                "--classes",
                "1",
                "--save-txt",
                "--project",
                tmp_path / "r",
            ],
            capsys,
        )
        assert rc == 0 and "image 2/2" in out
    for run in ("exp", "exp2"):
        files = list((tmp_path / "r" / run).glob("*.jpg"))
        assert files == []  # --nosave
        rows = [
            line.split() for p in (tmp_path / "r" / run / "labels").glob("*.txt") for line in p.read_text().splitlines()
        ]
        assert all(r[0] == "1" for r in rows)  # --classes 1


def test_detect_missing_source_is_an_error(checkpoint, tmp_path, capsys):
    rc, _, err = run_cli(
        ["detect", "--weights", checkpoint, "--source", tmp_path / "nope", "--project", tmp_path], capsys
    )
    assert rc == 1 and "does not exist" in err
