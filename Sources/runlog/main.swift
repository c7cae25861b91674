print("runlog")
