"""The pages' words, one catalogue module per area (message id -> text per language);
`portal.messages` joins them and refuses an id defined twice."""
