from __future__ import annotations

import numpy as np
import pytest
import torch

from modyolo.data import cache as C
from modyolo.data.dataset import DetectionDataset
from modyolo.data.dataset_yaml import load_data_config
from modyolo.data.loader import create_dataloader

HYP = {"mosaic": 1.0, "mixup": 0.5, "copy_paste": 0.3, "degrees": 5.0, "flipud": 0.2}


def _batches(train, cache, workers=0, n=3, size=96, **kw):
    loader, ds = create_dataloader(
        train,
        size,
        4,
        32,
        hyp=HYP,
        augment=True,
        cache=cache,
        workers=workers,
        shuffle=True,
        seed=7,
        progress=False,
        **kw,
    )
    out = [b for _, b in zip(range(n), loader)]
    return out, ds


@pytest.fixture(scope="module")
def train(shapes_yaml):
    return load_data_config(str(shapes_yaml)).train


def test_cache_modes_give_identical_batches(train):
    ref, _ = _batches(train, None)
    for mode in ("ram", "disk", "encoded-png"):
        got, ds = _batches(train, mode)
        assert ds.cache.mode == mode
        for (ia, ta, pa, _), (ib, tb, pb, _) in zip(ref, got):
            assert torch.equal(ia, ib) and torch.equal(ta, tb) and pa == pb, mode
    got, ds = _batches(train, "encoded")  # JPEG q95: same geometry and labels, pixels within codec error
    for (ia, ta, pa, _), (ib, tb, pb, _) in zip(ref, got):
        assert torch.equal(ta, tb) and pa == pb
        assert (ia.float() - ib.float()).abs().mean() < 3.0


def test_encoded_cache_is_exact_when_images_are_not_shrunk(train):
    """Images of 64-128 px trained at 160 px are enlarged: the encoded cache keeps their file
    bytes and enlarges after decoding, so its batches equal the uncached ones bit for bit."""
    ref, _ = _batches(train, None, size=160)
    got, ds = _batches(train, "encoded", size=160)
    assert ds.cache.mode == "encoded"
    for (ia, ta, pa, _), (ib, tb, pb, _) in zip(ref, got):
        assert torch.equal(ia, ib) and torch.equal(ta, tb) and pa == pb


def test_ram_cache_is_one_readonly_buffer_and_encoded_is_smaller(train):
    ds = DetectionDataset(train, img_size=96, cache="ram", progress=False)
    raw = sum(h * w * 3 for h, w in ds.resized_shapes())
    assert ds.cache.packed.buffer.nbytes == raw
    img, _, _ = ds.load_image(0)
    assert np.shares_memory(img, ds.cache.packed.buffer) and not img.flags.writeable
    ds[0]  # augmenting a sample must not write into the cache
    assert np.array_equal(ds.cache.get(0), ds._load_uncached(0))
    enc = DetectionDataset(train, img_size=96, cache="encoded", progress=False)
    assert enc.cache.nbytes < ds.cache.nbytes / 2


def test_cache_refuses_when_it_does_not_fit(train, monkeypatch):
    monkeypatch.setattr(C, "available_memory", lambda: 1000)
    with pytest.raises(C.CacheTooLarge, match="--cache ram needs about .* use --cache encoded"):
        DetectionDataset(train, img_size=96, cache="ram", progress=False)
    with pytest.raises(ValueError, match="unknown cache mode 'ramm'"):
        DetectionDataset(train, img_size=96, cache="ramm", progress=False)


def test_seeded_workers_are_reproducible_and_collate_carries_index(train):
    a, _ = _batches(train, None, workers=2, n=2)
    b, _ = _batches(train, None, workers=2, n=2)
    for (ia, ta, _, _), (ib, tb, _, _) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
    imgs, targets, paths, shapes = a[0]
    assert imgs.dtype == torch.uint8 and imgs.shape == (4, 3, 96, 96) and len(paths) == 4
    assert set(targets[:, 0].long().tolist()) <= set(range(4)) and targets.shape[1] == 6


def test_validation_shapes_map_back_to_originals(train):
    loader, ds = create_dataloader(train, 96, 4, 32, rect=True, workers=0, progress=False)
    assert ds.batch_shapes is not None and not ds.mosaic
    for imgs, targets, paths, shapes in loader:
        for k, ((h0, w0), ((rh, rw), (padw, padh))) in enumerate(shapes):
            i = ds.im_files.index(paths[k])
            assert (w0, h0) == tuple(ds.shapes[i])
            t = targets[targets[:, 0] == k]
            # label cx back in original pixels equals the verified label
            cx = (t[:, 2].numpy() * imgs.shape[3] - padw) / rw
            assert np.allclose(cx, ds.labels[i][:, 1] * w0, atol=0.6)
        assert imgs.shape[2] % 32 == 0 and imgs.shape[3] % 32 == 0


def test_close_mosaic_reaches_persistent_workers(train):
    loader, ds = create_dataloader(train, 96, 4, 32, hyp={"mosaic": 1.0}, augment=True, workers=1, progress=False)
    assert all(s is None for s in next(iter(loader))[3])
    ds.close_mosaic()
    assert all(s is not None for s in next(iter(loader))[3])


def test_distributed_sampler_splits_the_data(train):
    l0, ds = create_dataloader(train, 64, 2, 32, workers=0, rank=0, world_size=2, progress=False)
    l1, _ = create_dataloader(train, 64, 2, 32, workers=0, rank=1, world_size=2, progress=False)
    p0 = {p for b in l0 for p in b[2]}
    p1 = {p for b in l1 for p in b[2]}
    assert not p0 & p1 and len(p0 | p1) == len(ds)
