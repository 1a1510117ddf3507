"""Tests of radfusion.weights: fetch once, verify the SHA-256 prefix, the offline message, loading.

Nothing here touches the network: downloads come from file:// URLs of files the tests write, and
the "no network" case is a closed port on localhost.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import urllib.request

import pytest
import torch
import torchvision

from radfusion.models import ResNeXtUNet
from radfusion.models.resnext_unet import IMAGENET_TORCHVISION_FILES
from radfusion.weights import (
    IMAGENET_FILE,
    IMAGENET_URL,
    WeightsUnavailableError,
    fetch_encoder_weights,
    hash_prefix,
    verify_weights_file,
    weights_file_name,
)

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def write_named_by_hash(folder, stem: str, payload: bytes, suffix: str = ".pth"):
    """Write bytes as ``<stem>-<first 8 hex digits of their SHA-256><suffix>``, torch.hub style."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}{suffix}"
    path.write_bytes(payload)
    return path


def closed_port_url(name: str = IMAGENET_FILE) -> str:
    """An http URL on localhost where nothing listens: the download fails at once, as offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/{name}"


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    """A torchvision ResNeXt-50 32x4d state dict (random, classifier included) in the format of
    the ImageNet file, named by its own SHA-256 prefix; with the model it came from."""
    torch.manual_seed(3)
    source = torchvision.models.resnext50_32x4d(weights=None)
    folder = tmp_path_factory.mktemp("mirror")
    torch.save(source.state_dict(), folder / "tmp.pth")
    payload = (folder / "tmp.pth").read_bytes()
    (folder / "tmp.pth").unlink()
    return write_named_by_hash(folder, "resnext50_32x4d", payload), source


# --- file names and hashes ---------------------------------------------------------------


def test_the_imagenet_file_is_torchvisions_and_the_loader_knows_its_name():
    assert weights_file_name(IMAGENET_URL) == IMAGENET_FILE == "resnext50_32x4d-7cdf4587.pth"
    assert hash_prefix(IMAGENET_FILE) == "7cdf4587"
    assert IMAGENET_FILE in IMAGENET_TORCHVISION_FILES


@pytest.mark.parametrize("name", ["resnext50_32x4d.pth", "resnext50_32x4d-7cdf.pth", "weights-XYZ12345.pth"])
def test_a_name_without_a_hash_prefix_is_refused(name):
    with pytest.raises(ValueError, match="carries no SHA-256 prefix"):
        weights_file_name(f"https://mirror.example.org/models/{name}")


def test_verify_accepts_the_right_bytes_and_names_a_corrupt_file(tmp_path):
    path = write_named_by_hash(tmp_path, "w", b"weights")
    assert verify_weights_file(path) == path
    path.write_bytes(b"truncated")
    with pytest.raises(ValueError, match=f"{path.name}.*corrupt|corrupt.*{path.name}"):
        verify_weights_file(path)


# --- fetching --------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_reuses(tmp_path, monkeypatch):
    source = write_named_by_hash(tmp_path / "mirror", "resnext50_32x4d", b"\x00\x01 weights " * 1000)
    dest = tmp_path / "resources" / "weights"
    path = fetch_encoder_weights(dest, url=source.as_uri())
    assert path == dest / source.name
    assert path.read_bytes() == source.read_bytes()
    assert list(dest.iterdir()) == [path]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as any new file, not 0600

    # A second call reads the local file only: the network is never touched.
    def no_network(*args, **kwargs):
        raise AssertionError("fetch_encoder_weights went to the network for a file it has")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert fetch_encoder_weights(dest, url=source.as_uri()) == path


def test_a_corrupt_download_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    wrong = mirror / "resnext50_32x4d-00000000.pth"
    wrong.write_bytes(b"not the weights")
    dest = tmp_path / "weights"
    with pytest.raises(ValueError, match="does not start with 00000000"):
        fetch_encoder_weights(dest, url=wrong.as_uri())
    assert not any(dest.iterdir())


def test_without_network_the_message_names_file_url_and_folder(tmp_path):
    url = closed_port_url()
    dest = tmp_path / "weights"
    with pytest.raises(WeightsUnavailableError) as raised:
        fetch_encoder_weights(dest, url=url, timeout=10)
    message = str(raised.value)
    assert "\n" not in message
    assert IMAGENET_FILE in message and url in message
    assert f"put the file at {dest / IMAGENET_FILE}" in message
    assert "download failed" in message and "encoder_weights: null" in message
    assert not any(dest.iterdir())


def test_download_off_never_touches_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download=False went to the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsUnavailableError, match=r"weights\.download is false.*put the file at"):
        fetch_encoder_weights(tmp_path / "weights", download=False)
    assert not (tmp_path / "weights").exists()


# --- loading the fetched file into the network ------------------------------------------------


def test_fetched_torchvision_weights_load_and_adapt_the_first_convolution(tmp_path, torchvision_weights):
    mirror_file, source = torchvision_weights
    path = fetch_encoder_weights(tmp_path / "weights", url=mirror_file.as_uri())

    # 3 channels (FLAIR, CR, RE): every encoder tensor as in the file, the first convolution unchanged.
    model3 = ResNeXtUNet(in_channels=3, encoder_weights=path)
    torch.testing.assert_close(model3.encoder.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model3.encoder.layer4[2].conv2.weight, source.layer4[2].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(model3.encoder.layer2[0].bn1.running_mean, source.layer2[0].bn1.running_mean, rtol=0, atol=0)

    # 1 channel (FLAIR): the RGB kernels summed; the rest unchanged.
    model1 = ResNeXtUNet(in_channels=1, encoder_weights=str(path))
    assert model1.encoder.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(
        model1.encoder.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True), rtol=1e-6, atol=1e-6
    )
    torch.testing.assert_close(model1.encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight, rtol=0, atol=0)
