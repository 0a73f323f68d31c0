"""Tests of chollet_viz.cam.evaluation (the many-image comparison and its cache) on tiny models.

References: the evaluation's rows are compared with direct calls of ``deletion_curve``,
``insertion_curve`` and ``confidence_change`` on the same inputs, and with Average Drop
re-derived here from the model's own probabilities (Chattopadhay et al. 2018, sec. 6.2);
the summaries with NumPy (``np.std(ddof=1) / sqrt(n)``); the random baseline with
``np.random.default_rng([seed, position])`` written here.
"""

import json

import keras
import numpy as np
import pytest
from _autodiff import numpy
from keras import layers

from chollet_viz import cam
from chollet_viz.cam import evaluation as ev
from chollet_viz.data import AssetError, sha256_of

CLASSES = np.array([0, 1, 2, 3, 1], dtype=np.int32)  # a different class per image


def gap_model(seed=0):
    """conv -> pool -> conv (6x6) -> global average pooling -> dense softmax (Functional)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(4, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name="gap")


def flatten_model(seed=0):
    """The same trunk with a Flatten + Dense head, as a Sequential model without Input."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
        layers.Flatten(),
        layers.Dense(4, activation="softmax", name="dense"),
    ], name="flat")


def images(n=5, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 12, 12, 3)).astype(np.float32)


def methods_for(model):
    return {
        "Grad-CAM": ev.cam_method(cam.GradCAM(model, "conv_b")),
        "HiResCAM": ev.cam_method(cam.HiResCAM(model, "conv_b")),
        "LayerCAM": ev.cam_method(cam.LayerCAM(model, "conv_b")),
    }


@pytest.mark.parametrize("build", [gap_model, flatten_model])
def test_rows_match_direct_calls_with_a_class_per_image(build):
    model = build()
    x = images()
    model(x[:1])  # builds the Sequential model
    result = ev.evaluate(model, "conv_b", methods_for(model), x, CLASSES, steps=4, batch_size=2,
                         same_map_tolerance=None)
    assert result.methods == ["Grad-CAM", "HiResCAM", "LayerCAM", ev.RANDOM]
    direct_maps = {
        "Grad-CAM": cam.GradCAM(model, "conv_b").explain(x, CLASSES).heatmaps,
        "HiResCAM": cam.HiResCAM(model, "conv_b").explain(x, CLASSES).heatmaps,
        "LayerCAM": cam.LayerCAM(model, "conv_b").explain(x, CLASSES).heatmaps,
        # The random baseline: uniform maps at the layer's resolution (6x6), seeded per position.
        ev.RANDOM: np.stack([np.random.default_rng([0, p]).random((6, 6)) for p in range(5)]).astype(np.float32),
    }
    # Probabilities of the classes for the intact images, from the model itself.
    probs = numpy(model(x)).astype(np.float64)  # the model ends in a softmax
    np.testing.assert_allclose(result.probability, probs[np.arange(5), CLASSES], rtol=1e-5)
    for name, maps in direct_maps.items():
        rows = result.results[name]
        deletion = cam.deletion_curve(model, x, maps, CLASSES, steps=4)
        insertion = cam.insertion_curve(model, x, maps, CLASSES, steps=4)
        change = cam.confidence_change(model, x, maps, CLASSES)
        # Same inputs, batches of 2 against one batch of 5: float32 round-off only.
        np.testing.assert_allclose(rows["deletion"], deletion.auc, atol=1e-6)
        np.testing.assert_allclose(rows["insertion"], insertion.auc, atol=1e-6)
        np.testing.assert_allclose(rows["average_drop"], change.drop, atol=1e-4)
        np.testing.assert_array_equal(rows["increase"], change.increased.astype(float))
        # Average Drop from its definition: 100 max(0, Y - O) / Y, O the probability of the
        # image times its upsampled map.
        masked = x * cam.upsample(maps, (12, 12))[..., None]
        y = probs[np.arange(5), CLASSES]
        o = numpy(model(masked)).astype(np.float64)[np.arange(5), CLASSES]
        np.testing.assert_allclose(rows["average_drop"], 100 * np.maximum(y - o, 0) / y, atol=1e-3)
        np.testing.assert_array_equal(rows["increase"], (o > y).astype(float))
        assert np.all(rows["seconds"] > 0)


def test_a_method_with_the_same_maps_shares_the_numbers_not_the_time():
    # On a global-average-pooling head HiResCAM's map is Grad-CAM's; on a Flatten head not.
    x = images()
    gap = ev.evaluate(gap_model(), "conv_b", methods_for(gap_model()), x, CLASSES, steps=4, random_baseline=False)
    assert gap.settings["same_maps"]["HiResCAM"] == {"Grad-CAM": 5}
    assert gap.settings["same_maps"]["LayerCAM"] == {}
    for k in ("deletion", "insertion", "average_drop", "increase"):
        np.testing.assert_array_equal(gap.results["HiResCAM"][k], gap.results["Grad-CAM"][k])
    model = flatten_model()
    model(x[:1])
    flat = ev.evaluate(model, "conv_b", methods_for(model), x, CLASSES, steps=4, random_baseline=False)
    assert flat.settings["same_maps"]["HiResCAM"] == {}
    maps = cam.HiResCAM(model, "conv_b").explain(x, CLASSES).heatmaps
    assert np.abs(maps - cam.GradCAM(model, "conv_b").explain(x, CLASSES).heatmaps).max() > 1e-3
    np.testing.assert_allclose(flat.results["HiResCAM"]["deletion"],
                               cam.deletion_curve(model, x, maps, CLASSES, steps=4).auc, atol=1e-6)


def test_summary_is_mean_and_standard_error():
    rng = np.random.default_rng(3)
    rows = {k: rng.random(7) for k in ev.METRICS}
    result = ev.Evaluation([f"i{i}" for i in range(7)], np.zeros(7, np.int32), rng.random(7), {"m": rows})
    summary = result.summary()["m"]
    for k, values in rows.items():
        mean, se = summary[k]
        assert mean == pytest.approx(np.mean(values), rel=1e-12)
        assert se == pytest.approx(np.std(values, ddof=1) / np.sqrt(7), rel=1e-12)
    d_mean, d_se = summary["deletion"]
    assert f"{d_mean:.3f} ± {d_se:.3f}" in result.table()


def test_all_zero_maps_give_numbers_not_nan():
    x = images(2)
    model = gap_model()
    zero = ev.Method(lambda im, c: np.zeros((len(im), 6, 6), np.float32))
    result = ev.evaluate(model, "conv_b", {"zero": zero}, x, CLASSES[:2], steps=4, random_baseline=False)
    for k in ev.METRICS:
        assert np.all(np.isfinite(result.results["zero"][k])), k
    # The explanation map of an all-zero heatmap is the zero input: whatever it scores, it is a number.


def small_evaluation(tmp_path=None):
    model = gap_model()
    x = images(4)
    top = numpy(model(x)).argmax(axis=1)
    methods = methods_for(model)
    result = ev.evaluate(model, "conv_b", methods, x, top, names=[f"img{i}.jpg" for i in range(4)],
                         steps=4, batch_size=2)
    return model, x, methods, result


def test_cache_round_trips_and_a_corrupted_file_is_refused(tmp_path):
    _, _, _, result = small_evaluation()
    result.machine = {"cpu": "test"}
    result.extras = {"score_cam": {"full": [[0.5]]}}
    path = ev.save_results(result, tmp_path / "results.json")
    digest = sha256_of(path)
    again = ev.load_results(path, sha256=digest)
    assert again.images == result.images and again.methods == result.methods
    np.testing.assert_array_equal(again.class_index, result.class_index)
    for m in result.methods:
        for k in ev.METRICS:
            np.testing.assert_allclose(again.results[m][k], result.results[m][k], atol=1e-6)  # 7 decimals kept
    assert again.machine == {"cpu": "test"} and again.extras == result.extras
    assert again.settings["steps"] == 4
    document = json.loads(path.read_text())
    document["results"]["Grad-CAM"]["deletion"][0] += 0.1
    path.write_text(json.dumps(document))
    with pytest.raises(AssetError, match="sha256 .* expected"):
        ev.load_results(path, sha256=digest)
    (tmp_path / "other.json").write_text(json.dumps({"format": 1, "images": []}))
    with pytest.raises(ValueError, match="lacks class_index"):
        ev.load_results(tmp_path / "other.json")


def test_check_recomputes_and_fails_on_an_altered_value():
    model, x, methods, cached = small_evaluation()
    check = ev.check_cached(cached, model, methods, [1, 3], images=x[[1, 3]])
    assert check.ok and check.verdict().startswith("cache verified: 2 images")
    assert set(check.differences) == {"Grad-CAM", "HiResCAM", "LayerCAM", ev.RANDOM}
    # Alter one cached value by more than its tolerance: the check must name it.
    cached.results["LayerCAM"]["insertion"][3] += 0.05
    with pytest.raises(AssertionError, match="LayerCAM insertion on img3.jpg"):
        ev.check_cached(cached, model, methods, [1, 3], images=x[[1, 3]])
    # An image that is not re-checked may differ: only positions 0 and 2 are recomputed.
    assert ev.check_cached(cached, model, methods, [0, 2], images=x[[0, 2]]).ok
    cached.results["LayerCAM"]["insertion"][3] -= 0.05
    cached.class_index[1] = (cached.class_index[1] + 1) % 4
    check = ev.check_cached(cached, model, methods, [1], images=x[[1]], strict=False)
    assert not check.ok and "top-1 class" in check.verdict()


def test_bad_input_is_named():
    model, x = gap_model(), images(2)
    wrong_shape = ev.Method(lambda im, c: np.zeros((len(im), 6), np.float32))
    with pytest.raises(ValueError, match="'flat' returned heatmaps of shape"):
        ev.evaluate(model, "conv_b", {"flat": wrong_shape}, x, CLASSES[:2], random_baseline=False)
    too_big = ev.Method(lambda im, c: np.full((len(im), 6, 6), 2.0, np.float32))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        ev.evaluate(model, "conv_b", {"big": too_big}, x, CLASSES[:2], random_baseline=False)
    with pytest.raises(ValueError, match="name of the random baseline"):
        ev.evaluate(model, "conv_b", {ev.RANDOM: too_big}, x, CLASSES[:2])
    with pytest.raises(ValueError, match="batch_size"):
        ev.evaluate(model, "conv_b", {}, x, CLASSES[:2], batch_size=0)
    with pytest.raises(ValueError, match="out of range"):
        ev.evaluate(model, "conv_b", {}, x, [0, 9])


def test_map_agreement_against_numpy():
    rng = np.random.default_rng(5)
    a, b = rng.random((3, 7, 7)), rng.random((3, 7, 7))
    corr, diff = ev.map_agreement(a, b)
    for i in range(3):
        assert corr[i] == pytest.approx(np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1], abs=1e-12)
        assert diff[i] == pytest.approx(np.abs(a[i] - b[i]).max(), abs=1e-12)
    corr, _ = ev.map_agreement(np.zeros((1, 7, 7)), b[:1])
    assert corr[0] == 0.0


def test_the_registered_cache_is_verified_through_the_registry(tmp_path, monkeypatch):
    # A stand-in registry entry for the results, resolved from a temporary mirror (the real
    # data/registry.json is not touched).
    from chollet_viz import data

    _, _, _, result = small_evaluation()
    mirror = tmp_path / "mirror"
    path = ev.save_results(result, mirror / "results.json")
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    asset = data.Asset(name=ev.RESULTS_NAME, path="results.json", sha256=sha256_of(path))
    monkeypatch.setitem(data.registry(), ev.RESULTS_NAME, asset)
    assert ev.load_results().images == result.images
    path.write_text(path.read_text().replace('"img0.jpg"', '"img9.jpg"'))
    with pytest.raises(AssetError, match=f"'{ev.RESULTS_NAME}'.*has sha256 .* expected {asset.sha256}"):
        ev.load_results()


@pytest.mark.parametrize("max_images", [7, 16])  # one method per call; all (6x6 and 12x12 maps) in one
def test_confidence_computed_in_groups_equals_one_method_per_call(max_images):
    model, x = gap_model(), images()
    maps = {
        "Grad-CAM": cam.GradCAM(model, "conv_b").explain(x, CLASSES).heatmaps,
        "HiResCAM": cam.HiResCAM(model, "conv_b").explain(x, CLASSES).heatmaps,  # = Grad-CAM's maps here
        "LayerCAM": cam.LayerCAM(model, "conv_b").explain(x, CLASSES).heatmaps,
        "pixels": cam.upsample(cam.LayerCAM(model, "conv_a").explain(x, CLASSES).heatmaps, (12, 12)),
    }
    rows = {m: {k: np.full(5, np.nan) for k in ev.METRICS} for m in maps}
    grouped = ev.add_confidence(ev.Evaluation([str(i) for i in range(5)], CLASSES, np.zeros(5), rows), model, x,
                                maps, max_images=max_images)
    for name, m in maps.items():
        change = cam.confidence_change(model, x, m, CLASSES)  # one direct call per method
        np.testing.assert_allclose(grouped.results[name]["average_drop"], change.drop, atol=1e-4)
        np.testing.assert_array_equal(grouped.results[name]["increase"], change.increased.astype(float))


def test_versions_name_the_backend_and_its_library():
    # Reference: the version the backend's library reports of itself (Keras has imported it).
    import sys

    backend = keras.backend.backend()
    versions = ev.versions()
    assert versions["keras_backend"] == backend
    assert versions[backend] == sys.modules[backend].__version__
    assert versions["keras"] == keras.__version__
    assert isinstance(ev.machine_description()["accelerator"], str)
