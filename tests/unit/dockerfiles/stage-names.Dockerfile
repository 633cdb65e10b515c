FROM alpine AS a-b_c.d
FROM a-b_c.d AS Second
FROM second
