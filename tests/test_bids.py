"""BIDS datasets in (radfusion.bids and the workflow's samples), BIDS derivatives out (predict --bids)."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT, job_counts, run_snakemake, shared_data, workdir_with_test_config
from radfusion.bids import COHORT_COLUMNS, COHORT_TABLE, find_flairs, predict_bids
from radfusion.cli import main
from radfusion.io import InputError

from test_predict import blob_volume, write_fold_models

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def write(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def small_tree(root, *, masks=True):
    """sub-01 with sessions 1 and 2, sub-02 without sessions; lesion masks (unless masks=False)
    for sub-01 ses-1 (with space-orig) and sub-02, none for sub-01 ses-2."""
    flair, blobs = blob_volume()
    files = {
        "sub-01_ses-1": root / "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz",
        "sub-01_ses-2": root / "sub-01/ses-2/anat/sub-01_ses-2_acq-ax_FLAIR.nii.gz",
        "sub-02": root / "sub-02/anat/sub-02_FLAIR.nii.gz",
    }
    for path in files.values():
        write(path, flair)
    (root / "sub-02/anat/sub-02_T1w.nii.gz").write_bytes(b"")  # not a FLAIR: ignored
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    if masks:
        derivatives = root / "derivatives" / "lesion_masks"
        write(derivatives / "sub-01/ses-1/anat/sub-01_ses-1_space-orig_label-lesion_mask.nii.gz", blobs)
        write(derivatives / "sub-02/anat/sub-02_label-lesion_mask.nii.gz", blobs)
    return files


# --- reading ----------------------------------------------------------------------------------


def test_subjects_and_sessions_keep_their_bids_labels(tmp_path):
    files = small_tree(tmp_path)
    scans = find_flairs(tmp_path)
    assert [s.subject for s in scans] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert [(s.participant_id, s.session_id) for s in scans] == [("sub-01", "ses-1"), ("sub-01", "ses-2"), ("sub-02", "")]
    assert [s.flair for s in scans] == list(files.values())
    assert scans[1].prefix == "sub-01_ses-2_acq-ax"


def test_a_root_without_flair_is_refused(tmp_path):
    (tmp_path / "sub-01/anat").mkdir(parents=True)
    write(tmp_path / "sub-01/anat/sub-01_T1w.nii.gz", np.ones((4, 4, 4)))
    with pytest.raises(InputError, match=r"BIDS dataset without FLAIR"):
        find_flairs(tmp_path)


def test_two_flairs_in_one_session_are_refused_naming_subject_and_files(tmp_path):
    small_tree(tmp_path)
    write(tmp_path / "sub-01/ses-1/anat/sub-01_ses-1_run-2_FLAIR.nii.gz", np.ones((4, 4, 4)))
    with pytest.raises(InputError, match=r"subject 'sub-01_ses-1': .*sub-01_ses-1_FLAIR\.nii\.gz, .*_run-2_FLAIR"):
        find_flairs(tmp_path)


# --- the workflow's samples: a BIDS root (dry runs: the DAG, no job runs) -----------------------


def dry_run(tmp_path, samples, *targets):
    return run_snakemake(
        [*targets, "-n", "--quiet", "rules", "--directory", str(tmp_path), "--snakefile",
         str(PROJECT / "workflow" / "Snakefile"), "--configfile", str(PROJECT / "config" / "quick.yaml"),
         "--config", f"samples={samples}"],
        timeout=300,
    )


def test_workflow_reads_the_tree_as_radfusion_bids_does(tmp_path):
    small_tree(tmp_path / "bids")
    subjects = [s.subject for s in find_flairs(tmp_path / "bids")]
    targets = [f"results/normalized/{s}/brain.nii.gz" for s in subjects]
    result = dry_run(tmp_path, tmp_path / "bids", *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # two subjects with a mask: import_subject; sub-01_ses-2 without: import_flair (FLAIR only)
    assert counts["import_subject"] == 2 and counts["import_flair"] == 1 and counts["normalize_flair"] == 3
    assert counts["skull_strip"] == 3  # not demo subjects: auto lets the job decide


def test_a_target_that_needs_the_missing_mask_names_subject_and_file(tmp_path):
    small_tree(tmp_path / "bids")
    result = dry_run(tmp_path, tmp_path / "bids", "results/slices/sub-01_ses-2.npz")
    assert result.returncode != 0
    assert "subject 'sub-01_ses-2' has no lesion mask: FLAIR" in (result.stdout + result.stderr)
    assert "sub-01_ses-2_acq-ax_label-lesion_mask.nii.gz" in (result.stdout + result.stderr)
    ok = dry_run(tmp_path, tmp_path / "bids", "results/features/sub-01_ses-2/cr.nii.gz")
    assert ok.returncode == 0, ok.stderr


def test_a_root_without_flair_and_two_flairs_stop_the_workflow(tmp_path):
    (tmp_path / "empty/sub-01/anat").mkdir(parents=True)
    result = dry_run(tmp_path, tmp_path / "empty")
    assert result.returncode != 0 and "BIDS dataset without FLAIR" in (result.stdout + result.stderr)
    small_tree(tmp_path / "two")
    write(tmp_path / "two/sub-02/anat/sub-02_acq-sag_FLAIR.nii.gz", np.ones((4, 4, 4)))
    result = dry_run(tmp_path, tmp_path / "two")
    assert result.returncode != 0
    assert re.search(r"subject 'sub-02': .*sub-02_FLAIR\.nii\.gz, .*sub-02_acq-sag_FLAIR\.nii\.gz", (result.stdout + result.stderr))


def test_an_empty_mask_cell_is_the_same_case(tmp_path):
    flair, _ = blob_volume()
    write(tmp_path / "p1.nii.gz", flair)
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(f"subject\tflair\tmask\np1\t{tmp_path / 'p1.nii.gz'}\t\n")
    result = dry_run(tmp_path, sheet, "results/tables/features.csv")
    assert result.returncode != 0
    assert "Empty file path" not in (result.stdout + result.stderr)
    assert f"subject 'p1' has no lesion mask: FLAIR {tmp_path / 'p1.nii.gz'}, the mask cell of its row in {sheet} is empty" in (result.stdout + result.stderr)
    ok = dry_run(tmp_path, sheet, "results/features/p1/re.nii.gz")
    assert ok.returncode == 0, ok.stderr
    assert job_counts(ok.stdout)["import_flair"] == 1


# --- predict --bids: a BIDS derivatives dataset -------------------------------------------------

ENTITY = r"[a-z]+-[A-Za-z0-9]+"


def check_derivatives(root):
    """BIDS derivative rules, written from the spec (the validator is not installed here)."""
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["Name"] and description["GeneratedBy"][0]["Name"] == "radfusion"
    assert description["GeneratedBy"][0]["Version"]
    assert description["DatasetLinks"]["raw"].startswith("file://")  # what the sidecars' bids:raw: URIs name
    for path in root.rglob("*"):
        if path.is_dir() or path.parent == root:
            continue
        parts = path.relative_to(root).parts
        assert re.fullmatch(r"sub-[A-Za-z0-9]+", parts[0]) and parts[-2] == "anat", path
        match = re.fullmatch(rf"(sub-[A-Za-z0-9]+)(?:_(ses-[A-Za-z0-9]+))?((?:_{ENTITY})*)_([a-zA-Z0-9]+)\.(nii\.gz|json|tsv)", parts[-1])
        assert match, path
        assert [e for e in match.group(1, 2) if e] == list(parts[:-2]), path  # entities match the folders
        if match.group(4) == "mask" and match.group(5) == "json":
            assert json.loads(path.read_text())["Type"] in ("Brain", "Lesion", "Face", "ROI")
            assert path.with_name(path.name.replace(".json", ".nii.gz")).exists()


def test_predict_bids_writes_a_derivatives_dataset_and_the_cohort_table(tmp_path):
    small_tree(tmp_path / "bids", masks=False)
    models = write_fold_models(tmp_path / "models", input_name="mri")
    assert main(["predict", "--bids", str(tmp_path / "bids"), "--out", str(tmp_path / "derivatives"),
                 "--models", str(models[0].parent.parent), "-q"]) == 0
    out = tmp_path / "derivatives"
    check_derivatives(out)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "sub-01/ses-2/anat/sub-01_ses-2_acq-ax_label-lesion_mask.nii.gz" in names
    assert "sub-02/anat/sub-02_label-brain_mask.json" in names and "sub-02/anat/sub-02_desc-lesions_stats.tsv" in names
    cohort = pd.read_csv(out / COHORT_TABLE, sep="\t", keep_default_na=False)
    assert tuple(cohort.columns) == COHORT_COLUMNS
    assert cohort[["participant_id", "session_id"]].values.tolist() == [["sub-01", "ses-1"], ["sub-01", "ses-2"], ["sub-02", "n/a"]]
    for row, prefix in zip(cohort.itertuples(), ["sub-01/ses-1/anat/sub-01_ses-1", "sub-01/ses-2/anat/sub-01_ses-2_acq-ax", "sub-02/anat/sub-02"]):
        mask = nib.load(str(out / f"{prefix}_label-lesion_mask.nii.gz"))
        voxels = int(np.count_nonzero(np.asarray(mask.dataobj)))
        assert row.lesion_voxels == voxels
        assert row.total_volume_ml == pytest.approx(voxels * 2.0 / 1000, rel=1e-5)
        assert row.lesion_count == len(pd.read_csv(out / f"{prefix}_desc-lesions_stats.tsv", sep="\t"))


def test_predict_bids_leaves_nothing_when_a_scan_fails(tmp_path):
    small_tree(tmp_path / "bids", masks=False)
    (tmp_path / "bids/sub-02/anat/sub-02_FLAIR.nii.gz").write_bytes(b"not a nifti")
    models = write_fold_models(tmp_path / "models", input_name="mri")
    with pytest.raises(InputError, match=r"subject 'sub-02'.*sub-02_FLAIR\.nii\.gz"):
        predict_bids(tmp_path / "bids", tmp_path / "derivatives", model_paths=models)
    assert not (tmp_path / "derivatives").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bids", "models"] or sorted(p.name for p in tmp_path.iterdir()) == ["bids", "models"]


def test_predict_bids_on_clinical_flairs_strips_and_keeps_lesions_in_the_brain(tmp_path):
    data = shared_data("open_ms_data", "clinical_flair")
    scans = {"sub-01/ses-1": "patient01_study1", "sub-01/ses-2": "patient01_study2", "sub-04/ses-1": "patient04_study1"}
    for folder, scan in scans.items():
        anat = tmp_path / "bids" / folder / "anat"
        anat.mkdir(parents=True)
        (anat / f"{folder.replace('/', '_')}_FLAIR.nii.gz").symlink_to(data / scan / "FLAIR.nii.gz")
    models = write_fold_models(tmp_path / "models", input_name="mri", image_size=64)
    cohort = predict_bids(tmp_path / "bids", tmp_path / "derivatives", model_paths=models, threads=2)
    check_derivatives(tmp_path / "derivatives")
    assert len(cohort) == 3
    for folder, scan in scans.items():
        prefix = tmp_path / "derivatives" / folder / "anat" / folder.replace("/", "_")
        brain = np.asarray(nib.load(f"{prefix}_label-brain_mask.nii.gz").dataobj) > 0
        lesions = np.asarray(nib.load(f"{prefix}_label-lesion_mask.nii.gz").dataobj) > 0
        reference = np.asarray(nib.load(str(data / scan / "brain_mask.nii.gz")).dataobj) > 0.5
        assert brain.shape == reference.shape  # on the scan's own grid
        assert 2 * np.count_nonzero(brain & reference) / (brain.sum() + reference.sum()) >= 0.95
        assert not (lesions & ~brain).any()


def test_a_bids_tree_of_test_patients_and_demo_subjects_plans_the_whole_quick_dag(tmp_path):
    # The two real test patients and ten demo-sized stand-ins (a dry run reads no image), lesion
    # masks in the derivatives folder: the quick DAG of a sheet, plus the stripping jobs.
    data = shared_data("open_ms_data")
    root = tmp_path / "bids"
    derivatives = root / "derivatives" / "lesion_masks"
    for patient in ("patient07", "patient26"):
        label = patient.replace("patient", "p")
        for folder, name, source in ((root, "FLAIR", "FLAIR"), (derivatives, "label-lesion_mask", "lesion_mask")):
            anat = folder / f"sub-{label}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            (anat / f"sub-{label}_{name}.nii.gz").symlink_to(data / patient / f"{source}.nii.gz")
    flair, blobs = blob_volume()
    for n in range(1, 11):
        write(root / f"sub-demo{n:02d}/anat/sub-demo{n:02d}_FLAIR.nii.gz", flair)
        write(derivatives / f"sub-demo{n:02d}/anat/sub-demo{n:02d}_label-lesion_mask.nii.gz", blobs)
    result = run_snakemake(
        ["-n", "--quiet", "rules", "--forceall", "--directory", str(tmp_path), "--snakefile",
         str(PROJECT / "workflow" / "Snakefile"), "--configfile", str(PROJECT / "config" / "quick.yaml"),
         "--config", f"samples={root}"],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    for rule in ("import_subject", "skull_strip", "normalize_flair", "radiomics_maps", "export_slices"):
        assert counts[rule] == 12, rule
    assert counts["train_model"] == 24 and counts["assign_folds"] == 1 and counts["feature_distributions"] == 1
    assert "import_flair" not in counts and "demo_subject" not in counts


def block_means(box):
    """Means of 2 x 2 x 2 blocks of an array of even shape."""
    x, y, z = (n // 2 for n in box.shape)
    return box.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))


def block_mean_2mm(image):
    """A 1 mm image cropped to its nonzero box (plus a 2-voxel margin) and averaged over 2 x 2 x 2
    blocks: a 2 mm image whose affine places every block exactly where its voxels were."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    nonzero = np.argwhere(data != 0)
    lo = np.maximum(nonzero.min(axis=0) - 2, 0)
    hi = lo + 2 * ((np.minimum(nonzero.max(axis=0) + 3, data.shape) - lo) // 2)
    box = data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    blocks = block_means(box)
    to_1mm = np.diag([2.0, 2.0, 2.0, 1.0])
    to_1mm[:3, 3] = lo + 0.5  # the centre of block (0, 0, 0) in the 1 mm voxel grid
    return blocks, image.affine @ to_1mm, (lo, hi)


@pytest.mark.slow
def test_a_bids_tree_of_test_patients_and_demo_subjects_runs_the_whole_dag_to_the_tables(tmp_path):
    """Issue acceptance: a BIDS tree built from the two shared test patients and demo subjects,
    lesion masks in derivatives/lesion_masks, is the workflow's ``samples`` and the whole DAG runs
    to the tables and figures.

    The DAG is the test config's (.test/config: 3 folds, 3 epochs, 32 px; both models and both
    inputs), not the quick config's (40 min here). To keep it to minutes the two real patients
    (1 mm, 182 x 218 x 182) enter cropped to their brain and averaged to 2 mm (block means; the
    lesion mask where at least half a block is lesion), the size of the test config's demo
    subjects, which the workflow synthesizes first (rule demo_subject) and the tree links to.
    Measured: 6.5-8 minutes (397 s and 478 s) on 2 cores shared with another run.
    """
    data = shared_data("open_ms_data")
    work = workdir_with_test_config(tmp_path / "work")
    demos = [f"demo0{n}" for n in range(1, 5)]
    made = run_snakemake(
        ["--cores", "2", "--snakefile", str(PROJECT / "workflow" / "Snakefile"),
         *[f"resources/demo/{d}/{f}.nii.gz" for d in demos for f in ("flair", "mask")]],
        cwd=work, timeout=900,
    )
    assert made.returncode == 0, made.stderr[-8000:]
    root = tmp_path / "bids"
    derivatives = root / "derivatives" / "lesion_masks"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test patients and demo", "BIDSVersion": "1.10.0"}))
    for patient in ("patient07", "patient26"):
        label = patient.replace("patient", "p")
        flair, affine, (lo, hi) = block_mean_2mm(nib.load(str(data / patient / "FLAIR.nii.gz")))
        lesions = np.asarray(nib.load(str(data / patient / "lesion_mask.nii.gz")).dataobj, dtype=np.float32)
        mask = block_means(lesions[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]) >= 0.5
        assert mask.sum() > 50
        write(root / f"sub-{label}/anat/sub-{label}_FLAIR.nii.gz", flair, affine)
        write(derivatives / f"sub-{label}/anat/sub-{label}_label-lesion_mask.nii.gz", mask.astype(np.uint8), affine)
    for demo in demos:
        for folder, name, source in ((root, "FLAIR", "flair"), (derivatives, "label-lesion_mask", "mask")):
            anat = folder / f"sub-{demo}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            (anat / f"sub-{demo}_{name}.nii.gz").symlink_to(work / "resources/demo" / demo / f"{source}.nii.gz")
    subjects = sorted(["sub-p07", "sub-p26", *(f"sub-{d}" for d in demos)])
    result = run_snakemake(
        ["--cores", "2", "--snakefile", str(PROJECT / "workflow" / "Snakefile"), "--config", f"samples={root}"],
        cwd=work, timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-8000:]
    results = work / "results"
    assert sorted(pd.read_csv(results / "folds.tsv", sep="\t")["subject"]) == subjects
    for name in ("table1", "table2", "table3", "table4", "sdd", "features"):
        assert len(pd.read_csv(results / "tables" / f"{name}.csv")) > 0, name
    for number in (1, 2, 3, 4):
        assert (results / "figures" / f"figure{number}.png").stat().st_size > 10_000
    for subject in subjects:
        assert (results / "predictions" / "attention_unet" / "mri" / f"{subject}.nii.gz").exists()
        flair = np.asarray(nib.load(str(results / "nifti" / subject / "flair.nii.gz")).dataobj)
        brain = np.asarray(nib.load(str(results / "normalized" / subject / "brain.nii.gz")).dataobj) != 0
        stripping = (work / "logs" / "skull_strip" / f"{subject}.log").read_text()
        if subject.startswith("sub-p"):  # skull-stripped patients (auto): the nonzero voxels, no deepbet
            assert "already skull-stripped" in stripping
            np.testing.assert_array_equal(brain, flair != 0)
        else:  # demo subjects taken as data are judged by the rule, not by their name: at 2 mm
            # their nonzero voxels hold 1,669-2,108 mL (measured), most above the 1,900 mL of
            # "already stripped", so auto runs deepbet on those, whose mask takes about all of
            # their nonzero voxels and some zero ones
            assert "brain mask by" in stripping and brain.sum() >= 0.9 * np.count_nonzero(flair)


@pytest.mark.slow
def test_a_thick_slice_clinical_scan_as_samples_gets_brain_normalized_flair_and_maps(tmp_path):
    """Issue acceptance, on one of the six clinical scans (the benchmark runs all six:
    benchmarks/measurements/skull_strip_workflow.tsv): with ``samples`` a BIDS tree without
    lesion masks, the per-subject targets that need no mask (brain mask, normalized FLAIR, CR/RE
    maps) run on a whole-head 0.72 x 0.72 x 3 mm scan, on its own grid, and the brain mask is
    the one ``radfusion predict`` makes (the same function on the same imported FLAIR)."""
    from radfusion.io import load_volume
    from radfusion.predict import canonical_to_original
    from radfusion.skullstrip import subject_brain_mask

    scan = shared_data("open_ms_data", "clinical_flair", "patient04_study1", "FLAIR.nii.gz")
    anat = tmp_path / "bids/sub-04/ses-1/anat"
    anat.mkdir(parents=True)
    (anat / "sub-04_ses-1_FLAIR.nii.gz").symlink_to(scan)
    work = workdir_with_test_config(tmp_path / "work")
    subject = "sub-04_ses-1"
    targets = [f"results/normalized/{subject}/{name}.nii.gz" for name in ("brain", "flair")]
    targets += [f"results/features/{subject}/{name}.nii.gz" for name in ("cr", "re")]
    result = run_snakemake(
        ["--cores", "2", "--snakefile", str(PROJECT / "workflow" / "Snakefile"), *targets,
         "--config", f"samples={tmp_path / 'bids'}"],
        cwd=work, timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-8000:]
    flair, affine = load_volume(work / "results/nifti" / subject / "flair.nii.gz")
    assert flair.shape == nib.load(str(scan)).shape  # the scan's own grid, nothing resampled
    assert np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[2] == pytest.approx(3.0, abs=0.01)
    brain, _ = load_volume(work / "results/normalized" / subject / "brain.nii.gz", dtype=np.uint8)
    predicted = subject_brain_mask(flair, affine, mode="auto", threads=2, subject=subject).brain
    np.testing.assert_array_equal(brain != 0, predicted)
    # stripped, not the whole head: the reference brain mask's Dice, on the scan's own grid
    original = canonical_to_original(predicted.astype(np.uint8), nib.load(str(scan)).affine) != 0
    reference = np.asarray(nib.load(str(scan.with_name("brain_mask.nii.gz"))).dataobj) > 0.5
    assert 2 * np.count_nonzero(original & reference) / (original.sum() + reference.sum()) >= 0.95
    normalized, _ = load_volume(work / "results/normalized" / subject / "flair.nii.gz")
    assert (normalized[~predicted] == 0).all() and normalized[predicted].max() > 0
    for name in ("cr", "re"):
        feature, _ = load_volume(work / "results/features" / subject / f"{name}.nii.gz")
        assert feature.shape == flair.shape and np.isfinite(feature).all() and feature[predicted].std() > 0, name


def test_predict_bids_without_flair_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "bids/sub-01/anat").mkdir(parents=True)
    models = write_fold_models(tmp_path / "models", input_name="mri")
    code = main(["predict", "--bids", str(tmp_path / "bids"), "--out", str(tmp_path / "out"),
                 "--models", str(models[0].parent.parent), "-q"])
    assert code == 1
    assert "BIDS dataset without FLAIR" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
