"""Pure Triton kernels and their launchers (installed as ``tritonalex.kernels``).

No autograd and no torch.nn here: ``tritonalex.ops`` wraps these launchers in torch.library ops.
One file per op; ``launch.py`` holds what every launcher shares, the one launch
point included; ``tritonalex.perf`` compiles and models every launch without a GPU.
"""
