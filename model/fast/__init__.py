"""CPU kernels for the graph models, and the item-item models' scoring product: the same math as
model/ngcf.py, model/lightgcn.py and model/_item_item.py, fewer passes over memory. A graph model
takes them with `arch.args.impl` = "fused" (or "auto" on the CPU); tests/test_fast.py proves each
equal to the model's own plain-autograd code, values and gradients.

masks.py     dropout masks from cheap random words
sparse.py    the CSR product with an explicit transpose, a batch's rows of the graph, and
             a history times an item-item matrix in cache-sized blocks (model/_item_item.py)
pairs.py     BPR's two scores without concatenating the layers
ngcf.py      eq. 7 through every layer with a hand-written backward
lightgcn.py  LightGCN's mean of layers with the last one at the batch's rows
"""
