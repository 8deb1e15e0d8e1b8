"""AlexNet's conv layers as one table (../shared/ALEXNET.md), for tests and benchmarks.

One-tower form: the paper's two towers are groups=2 (conv2, conv4, conv5 read only their own
tower); conv3 reads both towers, so it has groups=1. Input 227x227, as the paper's 55x55 needs.
"""

ALEXNET_CONVS = {
    # name: (in_channels, out_channels, kernel, stride, padding, groups, input height = width)
    "conv1": (3, 96, 11, 4, 0, 1, 227),
    "conv2": (96, 256, 5, 1, 2, 2, 27),
    "conv3": (256, 384, 3, 1, 1, 1, 13),
    "conv4": (384, 384, 3, 1, 1, 2, 13),
    "conv5": (384, 256, 3, 1, 1, 2, 13),
}


def conv_shapes(name, batch):
    """(input shape, weight shape, conv keyword arguments) of an AlexNet conv layer."""
    cin, cout, k, stride, padding, groups, hw = ALEXNET_CONVS[name]
    return (batch, cin, hw, hw), (cout, cin // groups, k, k), dict(stride=stride, padding=padding,
                                                                   groups=groups)
