int rrl_alloc_placeholder(void);
