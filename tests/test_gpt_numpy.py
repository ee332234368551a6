"""The numpy GPT and MLP (nanostack.grad) are the torch models' twins: same names, same loss, same
gradients, same optimizer arithmetic, same greedy samples."""
import numpy as np
import pytest
import torch

from nanostack.grad import nn, optim
from nanostack.models import GPT, MLP, GPTConfig, ModelConfig
from nanostack.models.engines import TorchFacade
from nanostack.models.gpt_numpy import NumpyGPT
from nanostack.models.mlp_numpy import NumpyMLP

CONFIG = GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=16)


def twins(config=CONFIG, dtype=np.float64):
    """A torch GPT and a numpy GPT holding the same weights."""
    torch.manual_seed(0)
    reference = GPT(config).to(torch.float64 if dtype == np.float64 else torch.float32)
    nn.manual_seed(0)
    model = NumpyGPT(config, dtype=dtype)
    model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    return reference, model


def batch(config=CONFIG, seed=0, batch_size=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(config.vocab_size, (batch_size, config.block_size), generator=g)
    y = torch.randint(config.vocab_size, (batch_size, config.block_size), generator=g)
    y[0, :3] = -1  # some ignored targets
    return x, y


def assert_same_loss_and_gradients(reference, model, x, y):
    """The torch model and its numpy twin give the same logits, loss and gradient of every parameter."""
    logits_ref, loss_ref = reference(x, y)
    loss_ref.backward()
    logits, loss = model(x.numpy(), y.numpy())
    loss.backward()
    np.testing.assert_allclose(logits.data, logits_ref.detach().numpy(), rtol=1e-6, atol=1e-12)
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    grads = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(grads[name].grad, p.grad.numpy(), rtol=1e-6, atol=1e-12, err_msg=name)


def test_state_dict_names_and_shapes_equal_the_torch_gpts():
    reference, model = twins()
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == theirs
    assert model.num_params() == reference.num_params()
    assert model.lm_head.weight is model.transformer["wte"].weight  # weight tying


@pytest.mark.parametrize("bias", [True, False])
def test_loss_and_every_gradient_equal_torchs(bias):
    config = GPTConfig(**{**CONFIG.__dict__, "bias": bias})
    reference, model = twins(config)
    x, y = batch(config)
    assert_same_loss_and_gradients(reference, model, x, y)


def test_one_adamw_step_leaves_identical_weights():
    reference, model = twins()
    x, y = batch()
    settings = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8)

    def groups(named):
        named = list(named)
        return [{"params": [p for n, p in named if p.ndim >= 2], "weight_decay": 0.1},
                {"params": [p for n, p in named if p.ndim < 2], "weight_decay": 0.0}]
    opt_ref = torch.optim.AdamW(groups(reference.named_parameters()), **settings)
    opt = optim.AdamW(groups(model.named_parameters()), **settings)
    for _ in range(3):  # three steps, so the bias corrections and moment updates are exercised
        _, loss_ref = reference(x, y)
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        _, loss = model(x.numpy(), y.numpy())
        opt.zero_grad()
        loss.backward()
        opt.step()
    ours = model.state_dict()
    for name, p in reference.state_dict().items():
        np.testing.assert_allclose(ours[name], p.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_sgd_with_momentum_and_weight_decay_equals_torchs():
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal((4, 3)), [rng.standard_normal((4, 3)) for _ in range(3)]
    ours = nn.parameter(w0, np.float64)
    theirs = torch.tensor(w0, requires_grad=True)
    opt, opt_ref = optim.SGD([ours], lr=0.1, momentum=0.9, weight_decay=0.01), \
        torch.optim.SGD([theirs], lr=0.1, momentum=0.9, weight_decay=0.01)
    for g in grads:
        ours.grad, theirs.grad = g.copy(), torch.tensor(g)
        opt.step()
        opt_ref.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12)


def test_optimizer_state_round_trips():
    _, model = twins(dtype=np.float32)
    x, y = batch()
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    _, loss = model(x.numpy(), y.numpy())
    loss.backward()
    opt.step()
    restored = optim.AdamW(model.parameters(), lr=1e-3)
    restored.load_state_dict(opt.state_dict())
    assert restored.step_count == 1
    for i, buffers in opt.state.items():
        for name, array in buffers.items():
            np.testing.assert_array_equal(restored.state[i][name], array)


def test_greedy_samples_equal_the_torch_gpts():
    reference, model = twins()
    prompt = torch.tensor([[1, 2, 3]])
    expected = reference.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(TorchFacade(model).generate(prompt, 20, temperature=0), expected)


def test_load_state_dict_rejects_wrong_weights():
    _, model = twins()
    weights = model.state_dict()
    with pytest.raises(ValueError, match="shape"):
        model.load_state_dict({**weights, "lm_head.weight": np.zeros((3, 3))})
    with pytest.raises(KeyError, match="unexpected"):
        model.load_state_dict({**weights, "nonsense": np.zeros(1)})
    del weights["transformer.wpe.weight"]
    with pytest.raises(KeyError, match="missing"):
        model.load_state_dict(weights)


def test_float32_model_trains():
    """Loss at init is near ln(vocab), and a few AdamW steps overfit one batch."""
    nn.manual_seed(0)
    model = NumpyGPT(CONFIG)
    x, y = batch()
    _, loss = model(x.numpy(), y.numpy())
    assert loss.dtype == np.float32 and abs(loss.item() - np.log(CONFIG.vocab_size)) < 0.1
    opt = optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x.numpy(), y.numpy())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_numpy_mlp_equals_the_torch_mlp():
    config = ModelConfig(vocab_size=27, block_size=8, kind="mlp", n_embd=6, n_embd2=20)
    torch.manual_seed(0)
    reference = MLP(config).double()
    nn.manual_seed(0)
    model = NumpyMLP(config, dtype=np.float64)
    model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    x, y = batch(config)
    assert_same_loss_and_gradients(reference, model, x, y)
