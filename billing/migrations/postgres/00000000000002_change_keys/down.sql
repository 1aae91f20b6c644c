DROP TABLE change_keys;
