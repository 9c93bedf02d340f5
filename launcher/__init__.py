"""The `datastream` command line and `datastream up`: above the services, which it starts;
the shared package (datastream/) imports none of them."""
