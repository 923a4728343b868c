# A config file downloaded from somewhere: reading it must not run it.
resolution = "240p"
import os
os.system("touch PWNED_BY_CONFIG")
