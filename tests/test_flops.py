"""FLOPs from the Keras graph against the counts of the authors' graphs (METHOD.md §7.3)."""
import keras
import pytest

from common import flops
from common.layers import BatchNorm
from common.models import build_model

# Cumulative per exit path: FLOPs in the paper's convention (keras-flops with its BatchNorm rule)
# and MACs, as measured on the authors' TF 2.3 graphs.
EXPECTED = {
    "base": ([25_271_004], [12_501_632]),
    "trecx_ev": ([11_659_612, 26_459_416], [5_723_136, 13_070_976]),
    "trecx_noev": ([11_659_612, 26_444_568], [5_723_136, 13_063_808]),
    "sdn": ([10_522_972, 17_947_416, 25_326_420], [5_171_200, 8_846_336, 12_516_992]),
    "branchynet": ([15_257_948, 25_036_568, 32_415_572], [7_530_496, 12_382_720, 16_053_376]),
}


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_resnet8_paths_match_the_authors_graphs(variant):
    paths = flops.path_costs(build_model("image_classification", variant).model)
    assert [sum(c.flops for c in p) for p in paths] == EXPECTED[variant][0]
    assert [sum(c.macs for c in p) for p in paths] == EXPECTED[variant][1]


def test_paper_headline_numbers():
    assert round(flops.path_mflops(build_model("image_classification", "base").model)[0], 2) == 25.27
    ee, ef = flops.path_mflops(build_model("image_classification", "trecx_ev").model)
    assert (round(ee, 2), round(ef, 2)) == (11.66, 26.46)


def test_hand_counted_small_network():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c")(inputs)   # 4x4x4
    x = BatchNorm(name="bn")(x)
    y = keras.layers.DepthwiseConv2D(2, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.AveragePooling2D(2, name="pool")(x)                           # 2x2x4
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
