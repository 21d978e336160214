"""Block families. Importing this package registers every block in ``modyolo.nn.registry.BLOCKS``.

Adding a backbone family = one new file here + one import line below + a YAML in cfg/models.
"""

from modyolo.nn import head  # noqa: F401  (Detect)
from modyolo.nn.blocks import (
    attention,  # noqa: F401
    csp2,  # noqa: F401
    dynamic,  # noqa: F401
    external,  # noqa: F401
    ghost,  # noqa: F401
    hgnet,  # noqa: F401
    hub,  # noqa: F401
    mobilenet,  # noqa: F401
    resnet,  # noqa: F401
    transformer,  # noqa: F401
    v10,  # noqa: F401
    yolo,  # noqa: F401
    yolov7,  # noqa: F401
    yolov7_heads,  # noqa: F401
)
from modyolo.nn.heads import anchor_free  # noqa: F401  (DetectAF)
