//! Overview pyramids of a cube (issue 11): the levels at 2x steps written beside the data
//! variable in the same store, in the layout browser viewers read. See `docs/cube.md`.
