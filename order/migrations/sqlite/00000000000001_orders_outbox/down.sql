DROP TABLE outbox; DROP TABLE orders;
