import pytest

from modyolo.data.synthetic import make_shapes_dataset
from tiny_run import tiny_cfg


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """8 train / 4 val shapes images, 96-160 px: enough for a step, not for learning."""
    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, seed=0, img_size=(96, 160)))


@pytest.fixture
def tiny_model_cfg():
    return tiny_cfg()  # yolov5n at width 0.125 (tests/tiny_run.py)


@pytest.fixture
def train_kwargs(tiny_data, tiny_model_cfg, tmp_path):
    return dict(
        data=tiny_data,
        cfg=tiny_model_cfg,
        epochs=1,
        imgsz=64,
        batch_size=4,
        workers=0,
        project=str(tmp_path / "runs"),
        name="exp",
        verbose=False,
        noplots=True,
        seed=0,
    )
