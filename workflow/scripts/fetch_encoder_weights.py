"""Rule fetch_encoder_weights: download and verify the ImageNet encoder weights (the only download)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/

logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
    handlers=[logging.FileHandler(snakemake.log[0], mode="w"), logging.StreamHandler(sys.stderr)],
)

from radfusion.weights import WeightsUnavailableError, fetch_encoder_weights

folder = Path(snakemake.output[0]).parent
logging.info("fetching %s into %s", snakemake.params.url, folder)
try:
    path = fetch_encoder_weights(folder, url=snakemake.params.url, download=snakemake.params.download)
except (WeightsUnavailableError, ValueError) as error:
    logging.error("%s", error)  # one line, in the log and on the terminal
    sys.exit(1)
logging.info("wrote %s; its SHA-256 matches the prefix in its name", path)
