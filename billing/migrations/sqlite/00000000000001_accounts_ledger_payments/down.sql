DROP TABLE ledger; DROP TABLE payments; DROP TABLE accounts;
