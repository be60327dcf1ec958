"""Visual wake words (person / no person, 96x96 RGB) with MobileNetV1-0.25 early-exit models."""

# test.sh's default --data-dir is data/visual_wake_words/minival, which preprocess.sh builds (here, not in
# task.py, so that help texts read it without importing TensorFlow: common/tasks.py).
TEST_SUBDIR = "minival"
