import pytest
import torch

from methray import models, tasks


def test_mrcnn_output_and_layer_shapes():
    net = models.build("mrcnn")
    x = torch.zeros(5, 400, 4)
    assert net(x).shape == (5, 1)
    assert net.base_conv.weight.shape == (16, 1, 1, 4)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(32, 16, 3, 3), (48, 32, 3, 3), (64, 48, 3, 3)]
    h = net.base_conv(x.unsqueeze(1)).squeeze(-1).transpose(1, 2).reshape(5, 20, 20, 16).permute(0, 3, 1, 2)
    shapes = []
    for layer in net.features:
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(32, 18, 18), (32, 18, 18), (32, 6, 6), (48, 4, 4), (64, 2, 2)]
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(256, 256), (256, 80), (80, 1)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in net.head)


def test_mrcnn_reshape_keeps_sequence_order():
    # Base i of the window must land at row i // 20, column i % 20 of the 20 x 20 map.
    net = models.build("mrcnn")
    x = torch.zeros(1, 400, 4)
    x[0, 21, 0] = 1.0  # an A at position 21 -> row 1, column 1
    with torch.no_grad():
        net.base_conv.weight.zero_()
        net.base_conv.weight[:, 0, 0, 0] = 1.0
        net.base_conv.bias.zero_()
        h = net.base_conv(x.unsqueeze(1)).squeeze(-1).transpose(1, 2).reshape(1, 20, 20, 16).permute(0, 3, 1, 2)
    assert h[0, 0].nonzero().tolist() == [[1, 1]]


def test_methylation_head_clips_and_uses_mse():
    out = torch.tensor([[-0.2], [0.5], [1.3]])
    assert tasks.predict("methylation", out).flatten().tolist() == [0.0, 0.5, 1.0]
    assert tasks.loss("methylation", out, torch.tensor([0.0, 0.5, 1.0])).item() == pytest.approx((0.04 + 0 + 0.09) / 3)
