"""Window geometry shared by the launchers, the ops and the layer records: one output-size rule."""


def out_size(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False, padding_after=None):
    """Output length of a sliding window along one axis, torch's rule for conv and pooling.

    `padding` pads both ends unless `padding_after` gives the far end its own (conv's asymmetric
    'same' padding). With ceil_mode (pooling) a last partial window counts when it starts inside
    the input or its left padding.
    """
    after = padding if padding_after is None else padding_after
    span = size + padding + after - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
