"""UNet-F and UNet-L: the supervised references of every table (SSL4MIS `train_fully_supervised_2D.py`)."""
from __future__ import annotations

from sslbench.method import Batch, Losses, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss


@register_method("unet-l")
class UNetL(SSLMethod):
    """UNet trained on the labeled subset only, with SSL4MIS's 0.5 (CE + Dice) loss.

    The lower bound of Table 1: the same labeled volumes as the semi-supervised methods, no
    unlabeled data. Batches hold ``train.batch_size`` labeled slices, as SSL4MIS's script does.
    """

    paper_name = "UNet-L"
    uses_unlabeled = False
    dims = (2, 3)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l)}


@register_method("unet-f")
class UNetF(UNetL):
    """UNet trained on every training label (the upper bound of Table 1).

    The label ratio does not apply: one run per seed serves every ratio column of the tables.
    """

    paper_name = "UNet-F"
    uses_all_labels = True
