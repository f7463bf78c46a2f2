"""``fusionframes bench``: the measurements are well-formed and the counted work is what the architecture says."""

import json

import pytest

from fusionframes import bench
from fusionframes.cli import main


def test_group_interpolation_does_a_fifth_of_the_masked_work(pipe):
    result = bench.bench_interpolation(pipe, repeats=1)
    stages = result["stages"]
    assert list(stages) == ["interpolation s=3", "interpolation s=1"]
    assert [(s["frames_in"], s["frames_out"]) for s in stages.values()] == [(3, 9), (9, 33)]
    # T−1 groups of one U-Net "frame" each against T−1 windows of 5 frames: the U-Net body costs 5× as much (our
    # temporal convs and the masked model's temporal layers and wider 5-frame input/output roughly cancel).
    assert 4.5 < result["flops_ratio_interpolation"] < 5.5
    for s in stages.values():
        assert s["masked"]["flops"] / s["ours"]["flops"] == pytest.approx(result["flops_ratio_interpolation"],
                                                                         rel=0.02)
    sec = result["seconds"]
    assert result["time_ratio_interpolation"] == pytest.approx(sec["masked_interpolation"]
                                                               / sec["ours_interpolation"])
    assert sec["masked_pipeline"] - sec["ours_pipeline"] == pytest.approx(sec["masked_interpolation"]
                                                                         - sec["ours_interpolation"])
    official = result["at_official_steps"]
    assert (official["steps"], official["interpolation_steps"]) == (50, 50)
    per_step = {who: sum(s[who]["seconds"] for s in stages.values()) for who in ("ours", "masked")}
    shared = 50 * result["keyframes_per_step"]["seconds"] + result["decode"]["seconds"]
    assert official["time_ratio_pipeline"] == pytest.approx((shared + 50 * per_step["masked"])
                                                            / (shared + 50 * per_step["ours"]))
    assert "| whole pipeline at KV 1.0's 50 + 50" in bench.interpolation_markdown(result)


def test_utilisation_is_a_fraction_of_the_measured_peak(pipe):
    result = bench.bench_utilisation(pipe, repeats=1, top=5)
    assert result["flops"] > 0 and 0 < result["utilisation"] < 1.5 and len(result["top_ops"]) == 5
    assert sum(op["share"] for op in result["top_ops"]) <= 1.0 + 1e-9
    kernels = result["kernels"]
    # Convolutions and matmuls are all the FLOPs a U-Net has; each family's time is a part of the call's.
    assert kernels["convolution"]["flops"] + kernels["matmul"]["flops"] == result["flops"]
    assert kernels["convolution"]["flops"] > kernels["matmul"]["flops"] > 0
    assert 0 < kernels["convolution"]["share_of_time"] + kernels["matmul"]["share_of_time"] < 1
    # Not every microsecond is a kernel's: at least one family runs faster than the call as a whole.
    assert max(k["utilisation"] for k in kernels.values()) > result["utilisation"]
    assert result["seconds"] > 0 and result["achieved"] == pytest.approx(result["flops"] / result["seconds"])
    assert "| convolution |" in bench.utilisation_markdown(result)


def test_op_families_match_profiler_and_counter_names():
    assert [bench._family(n) for n in ("aten::mkldnn_convolution", "aten.convolution", "aten::conv2d",
                                       "aten::slow_conv3d_forward", "aten.mm", "aten::addmm",
                                       "aten::_scaled_dot_product_flash_attention_for_cpu", "aten.bmm",
                                       "aten::silu", "aten::native_group_norm", "aten::_convert_indices_from_coo",
                                       "[memory]")] == \
        ["convolution"] * 4 + ["matmul"] * 4 + [None] * 4


def test_bench_cli_writes_json_and_markdown(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    assert main(["bench", "interpolation", "--model", str(tmp_path / "model"), "--repeats", "1",
                 "--out", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "interpolation.json").read_text())
    assert {"flops_ratio_interpolation", "time_ratio_interpolation", "time_ratio_pipeline"} <= set(printed)
    assert (tmp_path / "interpolation.md").read_text().startswith("| stage |")
    assert main(["bench", "interpolation", "--repeats", "0"]) == 2
    assert "--repeats must be ≥ 1" in capsys.readouterr().err
    assert main(["bench", "pipeline", "--full-size"]) == 2
    assert "--full-size belongs to bench utilisation" in capsys.readouterr().err


def test_bench_pipeline_runs_each_level_in_its_own_process(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    assert main(["bench", "pipeline", "--model", str(tmp_path / "model"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [level["frames"] for level in result["levels"].values()] == [3, 9, 33]
    assert set(result["levels"]["high"]["seconds"]) == {"text", "keyframes", "interpolation s=3",
                                                        "interpolation s=1", "decode"}
    assert all(level["peak_rss_mb"] > 100 for level in result["levels"].values())  # torch alone is more
    assert result["one_stage"]["frames"] == 33 and result["one_stage_ratio"] > 0
    assert main(["bench", "pipeline", "--model", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_scaling_with_batch_is_linear_in_flops(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    result = bench.bench_scaling(tmp_path / "model", repeats=1, base=(3, 16, 1), sweeps={"batch": (1, 4)})
    sweep = result["sweeps"]["batch"]
    assert [p["batch"] for p in sweep["points"]] == [1, 4]
    assert sweep["flops_exponent"] == pytest.approx(1.0, abs=0.01) and sweep["points"][0]["seconds"] > 0
    bench.plot_scaling(result, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 0 and "| batch | 4 |" in bench.scaling_markdown(result)


def test_full_size_weights_per_component_and_dtype():
    weights = bench.full_size_weights()
    layer = 4 * 4096 * 4096 + 3 * 4096 * 16384 + 2 * 4096  # attention, gated FFN, two norms
    flan_ul2_encoder = 32 * layer + 32128 * 4096 + 4096 + 32 * 16  # + embeddings, final norm, relative bias
    assert weights["text encoder (Flan-UL2 encoder)"]["parameters"] == flan_ul2_encoder == 8_721_797_632
    assert weights["keyframe U-Net"]["parameters"] == 4143739012
    assert weights["interpolation U-Net"]["parameters"] == 3872572046
    assert weights["MoVQ"]["parameters"] == 270603567
    assert weights["keyframe U-Net"]["bfloat16_gb"] == pytest.approx(2 * 4143739012 / 1e9)
    assert "| MoVQ | 270,603,567 |" in bench.memory_markdown(dict(weights=weights))
