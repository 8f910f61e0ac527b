"""Pure text transforms below every layer that reads text: Unicode normalisation and decoded views."""
