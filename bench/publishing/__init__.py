"""Publishing: result records (write, read, validate), tables, HTML and reports."""
