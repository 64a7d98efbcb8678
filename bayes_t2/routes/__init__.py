"""One module per law (route): its PyMC model, its metric and its optimizer objective."""
