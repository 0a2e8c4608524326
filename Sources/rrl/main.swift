print("rrl")
