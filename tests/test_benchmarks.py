"""Smoke modes of the roofline benchmark and the GPU check (issue 22), run as a user runs them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from conftest import PROJECT

NETWORKS = ("resnext_unet", "attention_unet")


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(PROJECT / "src"), PYTHON=sys.executable, **env)
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, env=environment, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_gpu_check_smoke_writes_one_results_file(tmp_path):
    run(["bash", str(PROJECT / "benchmarks" / "gpu_check.sh"), str(tmp_path), "--smoke", "--threads", "1"])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 2 and written[0].startswith("gpu_check_") and written[0].endswith(".json")
    assert written[1] == written[0].replace(".json", ".md")
    results = json.loads((tmp_path / written[0]).read_text())
    assert results["smoke"] is True
    assert results["folds"] == 6 and results["slices"] == 1309
    assert [(r["device"], r["network"]) for r in results["runs"]] == [("cpu", n) for n in NETWORKS]
    for r in results["runs"]:
        assert r["image_size"] == 32 and r["timed_batch_size"] == 2 and r["jobs"] == 12
        for key in ("train_seconds_per_step", "train_images_per_s", "inference_images_per_s", "job_minutes",
                    "network_protocol_hours", "predict_patient_minutes"):
            assert positive(r[key]), (key, r[key])
        assert math.isclose(r["train_seconds_per_step"] * r["train_images_per_s"], 2)
        assert r["precision"] in ("float32", "bfloat16")
    assert results["summary"]["cpu_protocol_jobs"] == 24
    assert math.isclose(results["summary"]["cpu_protocol_hours"], sum(r["network_protocol_hours"] for r in results["runs"]))
    markdown = (tmp_path / written[1]).read_text()
    assert "SMOKE RUN" in markdown
    assert all(f"| cpu | {name} | 32 |" in markdown for name in NETWORKS)


def test_roofline_smoke(tmp_path):
    out = tmp_path / "roofline.md"
    run([sys.executable, str(PROJECT / "benchmarks" / "roofline.py"), "--smoke", "--threads", "1",
         "--dtypes", "float32", "bfloat16", "int8", "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    markdown = out.read_text()
    assert results["smoke"] is True and "SMOKE RUN" in markdown
    for flag in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"):
        assert flag in results["cpu"]["flags"] and flag in markdown
    assert all(positive(results["peaks"][d]["gflops"]) for d in ("float32", "bfloat16", "int8"))
    rows = {(r["network"], r["mode"], r["dtype"]): r for r in results["rows"]}
    for name in NETWORKS:
        for mode in ("train", "infer"):
            for dtype in ("float32", "bfloat16"):
                row = rows[(name, mode, dtype)]
                assert row["image_size"] == 32 and row["batch"] == 2 and row["size"] == "quick"
                for key in ("gflop_per_image", "seconds_per_step", "images_per_s", "gflops", "percent_of_peak"):
                    assert positive(row[key]), (name, mode, dtype, key, row[key])
                assert math.isclose(row["gflops"], row["gflop_per_image"] * row["images_per_s"])
                assert f"| {name} | quick | 32 | 2 | {mode} | {dtype} |" in markdown
        # training counts forward + backward: the backward costs about 2x the forward (grouped and
        # transposed convolutions a little more)
        ratio = rows[(name, "train", "float32")]["gflop_per_image"] / rows[(name, "infer", "float32")]["gflop_per_image"]
        assert 2.5 < ratio < 4.5
        # int8: measured, or a stated reason
        assert (name, "infer", "int8") in rows or any(n.startswith(f"int8: not supported for {name}") for n in results["notes"])
        assert (name, "train", "int8") not in rows
    assert rows[("resnext_unet", "infer", "float32")]["gflop_per_image"] < rows[("attention_unet", "infer", "float32")]["gflop_per_image"]
    for dtype in ("float32", "bfloat16"):
        for name in NETWORKS:
            key = f"{name} 32px batch 2 training step {dtype}"
            operators = results["top_operators"][key]
            assert len(operators) == 10 and all(o["self_ms"] >= 0 for o in operators)
            assert any("conv" in o["operator"] for o in operators)
            kernels = results["onednn_convolutions"][key]
            assert {k["prop_kind"] for k in kernels} >= {"forward_training", "backward_data", "backward_weights"}
            assert all(k["calls"] > 0 and k["impl"] for k in kernels)
            assert f"## oneDNN convolutions (ONEDNN_VERBOSE): {key}" in markdown
        # resnext_unet's grouped 3x3 convolutions show up as such
        assert any(k["grouped"] for k in results["onednn_convolutions"][f"resnext_unet 32px batch 2 training step {dtype}"])
        assert not any(k["grouped"] for k in results["onednn_convolutions"][f"attention_unet 32px batch 2 training step {dtype}"])


def test_summarize_onednn_parses_verbose_lines():
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from roofline import summarize_onednn

    verbose = "\n".join([
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,"
        "src:bf16::blocked:acdb::f0,attr-scratchpad:user,alg:convolution_direct,mb2_ic3oc64_ih32oh16kh7sh2,0.1",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,"
        "src:bf16::blocked:acdb::f0,attr-scratchpad:user,alg:convolution_direct,mb2_ic64oc64_ih16oh16kh3,0.1",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,"
        "src:f32::blocked:acdb::f0,attr-scratchpad:user,alg:convolution_direct,g32mb2_ic128oc128_ih16oh16,0.2",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx512_core,forward_training,x,y,z,0.1",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,simple:any,undef,src:f32,dst:f32,,,2x3,0.01",
        "not a verbose line",
    ])
    assert summarize_onednn(verbose) == [
        {"primitive": "convolution", "impl": "brg_conv_fwd:avx512_core_amx", "prop_kind": "forward_training",
         "grouped": False, "calls": 2},
        {"primitive": "convolution", "impl": "jit:avx512_core", "prop_kind": "backward_weights",
         "grouped": True, "calls": 1},
    ]


def test_peak_gflops_from_flags():
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from roofline import FLAGS, peak_gflops

    def cpu(*flags):
        return {"flags": {f: f in flags for f in FLAGS}, "threads": 2, "ghz": 2.0}

    avx512 = peak_gflops(cpu("avx512f", "avx512_vnni"))
    assert avx512["float32"]["gflops"] == 2.0 * 2 * 16 * 2 * 2  # 256
    assert avx512["bfloat16"]["gflops"] == avx512["float32"]["gflops"]  # emulated
    assert avx512["int8"]["gflops"] == 4 * 256
    assert peak_gflops(cpu("avx512f", "avx512_bf16"))["bfloat16"]["gflops"] == 512
    amx = peak_gflops(cpu("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"))
    assert amx["bfloat16"]["gflops"] == 2.0 * 2 * 1024 and amx["int8"]["gflops"] == 2.0 * 2 * 2048
    assert peak_gflops(cpu("avx2", "fma"))["float32"]["gflops"] == 2.0 * 2 * 8 * 2 * 2
    assert "assumed" in avx512["float32"]["formula"]


def test_inference_batch_times_every_batch_and_marks_the_policy(tmp_path):
    """The measurement behind the inference batch policy runs as documented and marks the batch
    :func:`radfusion.execution.inference_batch_size` picks (16 at 64 px)."""
    out = tmp_path / "inference_batch.md"
    run([sys.executable, str(PROJECT / "benchmarks" / "inference_batch.py"), "--cases", "resnext_unet:64",
         "--repeats", "1", "--threads", "1", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| resnext_unet | 64 |")]
    assert rows, out.read_text()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][3:]
        assert len(cells) == 6  # batches 1, 2, 4, 8, 16, 32
        assert [i for i, c in enumerate(cells) if c.startswith("**")] == [4]  # batch 16
        assert all(positive(float(c.strip("*"))) for c in cells)
