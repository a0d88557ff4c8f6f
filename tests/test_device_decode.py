"""Batches decoded where the model runs: the same path on every device, so tested here on the CPU."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from transferlab.data import image_batches
from transferlab.data.device_decode import device_batches
from transferlab.data.transforms import TensorEvalTransform

CONFIG = {"input_size": [3, 64, 64], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3,
          "crop_pct": 0.875}


@pytest.fixture
def files(tmp_path):
    from skimage import data

    chelsea = Image.fromarray(data.chelsea())
    paths = []
    for i, size in enumerate([(300, 200), (120, 160), (90, 90)]):
        path = tmp_path / f"photo{i}.jpg"
        chelsea.resize(size).save(path, quality=90)
        paths.append(path)
    grey = tmp_path / "grey.jpg"
    chelsea.convert("L").save(grey)
    png = tmp_path / "photo.png"
    chelsea.resize((100, 80)).save(png)
    cmyk = tmp_path / "cmyk.jpg"
    chelsea.convert("CMYK").save(cmyk)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((tmp_path / "photo0.jpg").read_bytes()[:200])
    return [*paths, grey, png, cmyk, broken]


@pytest.mark.parametrize("batch_size", [2, 8])
def test_device_decoding_gives_the_worker_path_s_batches(files, batch_size):
    transform = TensorEvalTransform(CONFIG, reduced_decoding=False)
    reference = list(image_batches(files, transform, batch_size, 0))
    on_device = list(device_batches(files, transform, "cpu", batch_size, 0))

    assert [b.indices for b in on_device] == [b.indices for b in reference]
    assert [b.unreadable for b in on_device] == [b.unreadable for b in reference] != [[]] * len(reference)
    for a, b in zip(on_device, reference):
        torch.testing.assert_close(a.images, b.images, atol=1e-5, rtol=0)


def test_plain_jpegs_go_to_the_device_decoder_and_other_files_are_decoded_on_the_cpu(files):
    from transferlab.data.device_decode import EncodedFiles

    kinds = [item[1].ndim if item[1] is not None else None for item in map(EncodedFiles(files).__getitem__,
                                                                                 range(len(files)))]
    assert kinds[:4] == [1, 1, 1, 1]  # JPEG bytes, RGB and greyscale
    assert kinds[4:6] == [3, 3]  # PNG and CMYK JPEG decoded by the worker
    assert kinds[6] in (1, None)  # a truncated JPEG: rejected by the header check or by the decoder


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nvjpeg_batches_match_the_cpu_path(files):
    transform = TensorEvalTransform(CONFIG, reduced_decoding=False)
    reference = list(image_batches(files, transform, 4, 0))
    on_gpu = list(image_batches(files, transform, 4, 0, device="cuda"))
    assert [b.indices for b in on_gpu] == [b.indices for b in reference]
    for a, b in zip(on_gpu, reference):
        assert a.images.is_cuda
        assert (a.images.cpu() - b.images).abs().max() < 0.1  # nvJPEG's IDCT differs from libjpeg's by a level or two
