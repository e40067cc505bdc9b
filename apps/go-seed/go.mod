module seed

go 1.20
