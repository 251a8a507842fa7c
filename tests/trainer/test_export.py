"""Export fidelity: numpy inference in the weigher reproduces torch."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from nova_rl_trainer.learning import policy_net  # noqa: E402
from nova_rl_weigher import artifact  # noqa: E402
from nova_rl_weigher import features  # noqa: E402
from tests import fixtures as testing  # noqa: E402


def candidate_sets(seed, sizes):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        hosts, request, usage = testing.random_candidates(rng, n)
        out.append(features.build_matrix(hosts, request, usage))
    return out


def trained_like_model(seed=0):
    """A model with non-trivial weights: a few optimiser steps on noise."""
    model = policy_net.EnsembleScorer(members=4, hidden=16, seed=seed)
    xs = candidate_sets(seed, [6] * 8)
    flat = np.concatenate(xs)
    model.set_normalisation(flat.mean(0), flat.std(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.as_tensor(np.stack(xs))
    target = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(20):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, flat


def test_numpy_inference_reproduces_torch(tmp_path):
    model, flat = trained_like_model()
    path = str(tmp_path / 'policy')
    policy_net.export(model, path, feature_min=flat.min(0),
                      feature_max=flat.max(0), objective='packing',
                      provenance={'test': True})
    policy = artifact.load_artifact(path)
    for x in candidate_sets(7, [1, 2, 5, 33, 200]):
        with torch.no_grad():
            expected = model(torch.as_tensor(x)[None])[:, 0].numpy()
        np.testing.assert_allclose(policy.score(x), expected, rtol=1e-5,
                                   atol=1e-5)


def test_padding_mask_matches_unpadded_sets():
    model, _ = trained_like_model(3)
    a, b = candidate_sets(9, [3, 7])
    padded = np.zeros((2, 7, features.NUM_FEATURES), dtype=np.float32)
    padded[0, :3], padded[1] = a, b
    mask = torch.tensor([[1] * 3 + [0] * 4, [1] * 7], dtype=torch.bool)
    with torch.no_grad():
        batch = model(torch.as_tensor(padded), mask)
        alone = model(torch.as_tensor(a)[None])
    np.testing.assert_allclose(batch[:, 0, :3].numpy(), alone[:, 0].numpy(),
                               rtol=1e-5, atol=1e-6)


def test_round_trip_through_the_artifact(tmp_path):
    model, manifest = policy_net.from_artifact(testing.V1_POLICY_PATH)
    assert model.members == manifest['ensemble_size']
    x = candidate_sets(11, [12])[0][:, :features.SCHEMA_V1.num_features]
    policy = artifact.load_artifact(testing.V1_POLICY_PATH)
    with torch.no_grad():
        got = model(torch.as_tensor(x)[None])[:, 0].numpy()
    np.testing.assert_allclose(policy.score(x), got, rtol=1e-5, atol=1e-5)


def test_a_v1_policy_widened_to_v2_scores_the_same():
    # Retraining a v1 policy starts from it widened to the current schema:
    # the new columns get zero weights, so the scores are the v1 policy's.
    v1 = artifact.load_artifact(testing.V1_POLICY_PATH)
    params, mean, std = policy_net.widen(v1.params, v1.mean, v1.std,
                                         features.NUM_FEATURES)
    model = policy_net.EnsembleScorer(members=v1.params['W1'].shape[0],
                                      hidden=v1.params['W1'].shape[2])
    model.load_numpy_params(params)
    model.set_normalisation(mean, std)
    x = candidate_sets(5, [9])[0]
    assert (x.shape[1] == features.NUM_FEATURES
            > features.SCHEMA_V1.num_features)
    # Garbage in the new columns must not matter.
    x[:, features.SCHEMA_V1.num_features:] = 123.0
    with torch.no_grad():
        got = model(torch.as_tensor(x)[None])[:, 0].numpy()
    want = v1.score(x[:, :features.SCHEMA_V1.num_features])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='cannot become'):
        policy_net.widen(params, mean, std, 3)
