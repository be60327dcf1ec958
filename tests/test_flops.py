"""FLOPs from the Keras graph against the counts keras-flops gives on the authors' TF 2.3 graphs."""

import keras
import pytest

from common import flops
from common.layers import BatchNorm
from common.models import build_model

# Cumulative per exit path: FLOPs in the paper's convention (keras-flops with its BatchNorm rule)
# and MACs, as measured on the authors' TF 2.3 graphs.
# MFLOPs are given to 3 decimals there; MACs exactly.
EXPECTED = {
    ("image_classification", "base"): ([25_271_004], [12_501_632]),
    ("image_classification", "trecx_ev"): ([11_659_612, 26_459_416], [5_723_136, 13_070_976]),
    ("image_classification", "trecx_noev"): ([11_659_612, 26_444_568], [5_723_136, 13_063_808]),
    ("image_classification", "sdn"): ([10_522_972, 17_947_416, 25_326_420], [5_171_200, 8_846_336, 12_516_992]),
    ("image_classification", "branchynet"): ([15_257_948, 25_036_568, 32_415_572], [7_530_496, 12_382_720, 16_053_376]),
    ("keyword_spotting", "base"): ([5.541], [2_656_768]),
    ("keyword_spotting", "trecx_ev"): ([3.127, 5.648], [1_501_536, 2_706_688]),
    ("keyword_spotting", "trecx_noev"): ([3.127, 5.570], [1_501_536, 2_670_304]),
    ("keyword_spotting", "eefmaps_concat"): ([3.127, 5.572], [1_501_536, 2_670_688]),
    ("keyword_spotting", "sdn"): ([1.897, 3.129, 4.361, 5.587], [908_608, 1_497_216, 2_085_824, 2_670_592]),
    ("keyword_spotting", "branchynet"): ([6.498, 12.331, 14.774], [3_208_384, 6_096_768, 7_265_536]),
    ("visual_wake_words", "base"): ([15.693], [7_489_664]),
    ("visual_wake_words", "trecx_ev"): ([7.090, 18.190], [3_309_696, 8_710_208]),
    ("visual_wake_words", "trecx_noev"): ([7.090, 18.183], [3_309_696, 8_707_328]),
}


@pytest.mark.parametrize("task,variant", sorted(EXPECTED))
def test_paths_match_the_authors_graphs(task, variant):
    paths = flops.path_costs(build_model(task, variant).model)
    expected_flops, expected_macs = EXPECTED[task, variant]
    measured = [sum(c.flops for c in p) for p in paths]
    if isinstance(expected_flops[0], float):
        measured = [round(f / 1e6, 3) for f in measured]
    assert measured == expected_flops
    assert [sum(c.macs for c in p) for p in paths] == expected_macs


@pytest.mark.parametrize(
    "task,base,ee,ef",
    [
        ("image_classification", 25.27, 11.66, 26.46),
        ("keyword_spotting", 5.54, 3.13, 5.65),
        ("visual_wake_words", 15.69, 7.09, 18.19),
    ],
)
def test_paper_headline_numbers(task, base, ee, ef):
    assert round(flops.path_mflops(build_model(task, "base").model)[0], 2) == base
    measured = flops.path_mflops(build_model(task, "trecx_ev").model)
    assert [round(m, 2) for m in measured] == [ee, ef]


def test_hand_counted_small_network():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c")(inputs)  # 4x4x4
    x = BatchNorm(name="bn")(x)
    y = keras.layers.DepthwiseConv2D(2, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.AveragePooling2D(2, name="pool")(x)  # 2x2x4
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, activation="softmax", name="d")(x)
    costs = {c.name: c for c in flops.path_costs(keras.Model(inputs, x))[0]}
    assert costs["c"].macs == 4 * 4 * 4 * 3 * 3 * 3 and costs["c"].flops == 2 * 1728 + 64
    assert costs["bn"].flops == 2 * 64 + 6 * 4
    assert costs["dw"].flops == 2 * (4 * 4 * 4 * 2 * 2)
    assert costs["add"].flops == 64
    assert costs["pool"].flops == 16 * 4
    assert costs["d"].flops == 2 * 16 * 5 + 5 + 5 * 5
    assert costs["c"].params == 3 * 3 * 3 * 4 + 4


def test_only_the_path_to_an_exit_is_charged():
    model = build_model("image_classification", "trecx_ev").model
    ee_path, full_path = flops.path_costs(model)
    ee_layers = {c.name for c in ee_path}
    assert "ee_out" in ee_layers and "ef_out" not in ee_layers and "conv2d_3" not in ee_layers
    assert {c.name for c in full_path} == {layer.name for layer in model.layers}
    assert "total" in flops.format_table(full_path)


def test_unknown_layer_is_refused():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.MaxPooling2D(name="mp")(inputs))
    with pytest.raises(ValueError, match="no FLOP rule for layer mp"):
        flops.path_costs(model)
