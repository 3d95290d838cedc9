import torch

from pipeline.params import load_params
from stages import data, fewshot
from stages.train import train
from tests.conftest import edit_params


def test_a_training_run_depends_on_its_seed_not_on_the_process(workdir):
    """Each stage runs in a new process whose torch seed is random: the student's fresh head must not depend on it."""
    edit_params(workdir, lambda raw: raw["student"].update(epochs=1))
    data.main("banking77_mini")
    fewshot.main("banking77_mini")
    runs = {}
    for global_seed, seed in ((1, 0), (2, 0), (1, 1)):
        torch.manual_seed(global_seed)  # what an unseeded new process would have drawn
        model, _, log = train(load_params(), "banking77_mini", "k5-seed0", "baseline", seed)
        runs[global_seed, seed] = (model.classifier.weight.detach().clone(), log)
    (head, log), (same_head, same_log), (other_head, _) = runs.values()
    assert torch.equal(head, same_head) and log.equals(same_log)
    assert not torch.equal(head, other_head)  # the training seed does change the run
