/** The base seed of the CI tier: fixed, so CI runs the same episodes every time. */
export const CI_SEED = 0xc0ffee;
