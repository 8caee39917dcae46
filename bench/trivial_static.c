/* The "trivial static binary" of the restore benchmark: exec it, exit 0. */
int main(void) { return 0; }
