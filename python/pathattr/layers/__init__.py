"""Attribution inside the model: layer IG / IDG (`layer`), internal neuron attributions
(`neurons`) and the forward hooks both use (`hooks`)."""
