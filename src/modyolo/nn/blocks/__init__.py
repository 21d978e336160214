"""Block families. Importing this package registers every block in ``modyolo.nn.registry.BLOCKS``.

Adding a backbone family = one new file here + one import line below + a YAML in cfg/models.
"""

from modyolo.nn import head  # noqa: F401  (Detect)
from modyolo.nn.blocks import yolo  # noqa: F401
from modyolo.nn.blocks import resnet  # noqa: F401
from modyolo.nn.blocks import mobilenet  # noqa: F401
from modyolo.nn.blocks import dynamic  # noqa: F401
from modyolo.nn.blocks import hgnet  # noqa: F401
from modyolo.nn.blocks import external  # noqa: F401
from modyolo.nn.blocks import attention  # noqa: F401
from modyolo.nn.blocks import csp2  # noqa: F401
from modyolo.nn.blocks import v10  # noqa: F401
from modyolo.nn.heads import anchor_free  # noqa: F401  (DetectAF)
from modyolo.nn.blocks import yolov7  # noqa: F401
from modyolo.nn.blocks import yolov7_heads  # noqa: F401
from modyolo.nn.blocks import ghost  # noqa: F401
from modyolo.nn.blocks import transformer  # noqa: F401
from modyolo.nn.blocks import hub  # noqa: F401
