"""Analytics over what driftloop recorded in ClickHouse: the data behind reports, the plots, the HTML report."""
