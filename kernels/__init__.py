"""Pure Triton kernels and their launchers (installed as ``tritonalex.kernels``).

No autograd and no torch.nn here: ``tritonalex.ops`` wraps these launchers in autograd Functions.
One file per op; ``launch.py`` holds what every launcher shares; ``aot.py`` compiles every kernel's
GPU configs ahead of time for sm_80 and sm_90.
"""
