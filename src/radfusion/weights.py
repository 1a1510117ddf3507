"""ImageNet encoder weights: the one download of the workflow, fetched once and verified.

The paper's ResNeXt-UNet encoder is "pre-trained on ImageNet". The weights are torchvision's
ResNeXt-50 32x4d ImageNet checkpoint (the file segmentation-models-pytorch's ``imagenet``
weights were taken from). :func:`fetch_encoder_weights` downloads it once into a local folder
(``resources/weights/`` in the workflow) and checks it the way ``torch.hub`` does: the file name
``<name>-<hex>.pth`` carries the first hex digits of the file's SHA-256. Training then reads the
local file (:func:`radfusion.models.resnext_unet.load_encoder_weights`); nothing else in the
package touches the network. Standard library only, so the step runs anywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

#: torchvision's ImageNet checkpoint of ResNeXt-50 32x4d (``ResNeXt50_32X4D_Weights.IMAGENET1K_V1``).
IMAGENET_URL = "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth"
#: Its file name; ``7cdf4587`` is the start of the file's SHA-256.
IMAGENET_FILE = "resnext50_32x4d-7cdf4587.pth"
#: Where the workflow keeps it (config ``weights.folder``).
DEFAULT_FOLDER = "resources/weights"
#: Seconds a connection may stay silent before the download is given up.
DEFAULT_TIMEOUT = 60.0

# torch.hub's convention (torch.hub.HASH_REGEX): "-<hex digits>." in the file name. At least 8
# hex digits here, as torchvision's names carry, so a name that only looks like one is rejected.
_HASH_PATTERN = re.compile(r"-([a-f0-9]{8,})\.")
_CHUNK = 1 << 20


class WeightsUnavailableError(RuntimeError):
    """The weights file is not on disk and cannot be downloaded (no network, or not allowed)."""


def weights_file_name(url: str = IMAGENET_URL) -> str:
    """The local file name of a weights URL: its last path component.

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` URL whose file name carries a SHA-256 prefix
        (``<name>-<hex>.<ext>``, at least 8 hex digits).

    Returns
    -------
    str
        The file name, e.g. ``resnext50_32x4d-7cdf4587.pth``.
    """
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    hash_prefix(name)  # raises for a name without one
    return name


def hash_prefix(name: str | os.PathLike) -> str:
    """The SHA-256 prefix a weights file name carries (torch.hub's ``-<hex>.`` convention).

    Parameters
    ----------
    name : str or path
        File name or path, e.g. ``resnext50_32x4d-7cdf4587.pth``.

    Returns
    -------
    str
        The hex digits, e.g. ``7cdf4587``.
    """
    match = _HASH_PATTERN.search(Path(name).name)
    if match is None:
        raise ValueError(
            f"weights file name '{Path(name).name}' carries no SHA-256 prefix; expected "
            f"'<name>-<at least 8 hex digits>.<ext>' as torchvision names its files "
            f"(e.g. {IMAGENET_FILE})"
        )
    return match.group(1)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, as hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights_file(path: str | os.PathLike, name: str | None = None) -> Path:
    """Check a weights file against the SHA-256 prefix in its file name.

    Parameters
    ----------
    path : str or path
        The file.
    name : str, optional
        The name that carries the prefix, when ``path`` is a temporary file; default
        ``path``'s own name.

    Returns
    -------
    pathlib.Path
        ``path``. ValueError when the file's SHA-256 does not start with the prefix.
    """
    path = Path(path)
    _check_sha256(file_sha256(path), name or path.name, f"weights file {path}")
    return path


def _check_sha256(actual: str, name: str, source: str, consequence: str = "") -> None:
    """ValueError unless the hex digest ``actual`` starts with the prefix in file name ``name``."""
    expected = hash_prefix(name)
    if not actual.startswith(expected):
        raise ValueError(
            f"{source} is corrupt or not the expected file: its SHA-256 {actual} does not start "
            f"with {expected}, the prefix in its name '{name}'{consequence}"
        )


def missing_weights_message(path: str | os.PathLike, url: str, reason: str) -> str:
    """The one-line message for a weights file that is neither on disk nor downloadable.

    Parameters
    ----------
    path : str or path
        Where the file belongs (``<weights.folder>/<file name>``).
    url : str
        Where it comes from.
    reason : str
        Why it was not downloaded (the network error, or that downloading is turned off).
    """
    path = Path(path)
    return (
        f"ImageNet encoder weights {path.name} are missing from {path.parent}/ and were not "
        f"downloaded ({reason}). On a machine with network access download {url} and put "
        f"the file at {path}; or set training.resnext_unet.encoder_weights: null to train the "
        f"encoder from scratch."
    )


def fetch_encoder_weights(
    dest_dir: str | os.PathLike = DEFAULT_FOLDER,
    *,
    url: str = IMAGENET_URL,
    timeout: float = DEFAULT_TIMEOUT,
    download: bool = True,
) -> Path:
    """Download verified encoder weights into a folder once; an existing file is reused.

    Parameters
    ----------
    dest_dir : str or path
        Folder of the weights (created if needed); the file keeps the URL's file name.
    url : str
        ``http(s)://`` or ``file://`` URL; its file name must carry the SHA-256 prefix
        (:func:`hash_prefix`). Default: torchvision's ResNeXt-50 32x4d ImageNet weights.
    timeout : float
        Seconds a connection may stay silent.
    download : bool
        ``False``: never touch the network; the file must already be there.

    Returns
    -------
    pathlib.Path
        ``dest_dir / <file name>``, verified.

    Notes
    -----
    An existing file is verified and returned without any network access. A download goes
    to a temporary file in ``dest_dir`` while its SHA-256 is computed; it is renamed into
    place only when the hash matches (``os.replace``, atomic on one file system), so an
    interrupted or corrupt download never leaves a file under the final name.
    WeightsUnavailableError (one line: the file, the URL and where to put the file) when
    the file is missing and the download is off or fails; ValueError when an existing or
    downloaded file fails verification.
    """
    name = weights_file_name(url)
    dest_dir = Path(dest_dir)
    path = dest_dir / name
    if path.is_file():
        return verify_weights_file(path)
    if not download:
        raise WeightsUnavailableError(missing_weights_message(path, url, "weights.download is false"))
    dest_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=dest_dir, prefix=f".{name}.", suffix=".part", delete=False)
    partial = Path(handle.name)
    try:
        with handle:
            digest = hashlib.sha256()
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        handle.write(chunk)
                        digest.update(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
                reason = getattr(error, "reason", None) or error
                raise WeightsUnavailableError(
                    missing_weights_message(path, url, f"download failed: {reason}")
                ) from error
        _check_sha256(digest.hexdigest(), name, f"downloaded {url}", f"; nothing was written to {path}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # the temporary file was private (0600)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
