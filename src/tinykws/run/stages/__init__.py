"""One module per recipe stage; each reads what earlier stages wrote into the run directory."""
