int rrl_alloc_placeholder(void) { return 0; }
