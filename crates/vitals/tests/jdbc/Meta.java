// What DBeaver and Metabase ask a PostgreSQL server through pgjdbc (Debian's
// libpostgresql-jdbc-java) when they browse it: the product, the schemas, the tables and
// the columns of `samples`, then one prepared query. Run by tests/it/pg_catalog.rs as
// `java -cp postgresql.jar Meta.java <url> <user> <password>`; one line per fact.
import java.sql.*;
import java.util.Properties;

public class Meta {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        p.setProperty("sslmode", "disable");
        try (Connection c = DriverManager.getConnection(args[0], p)) {
            DatabaseMetaData m = c.getMetaData();
            System.out.println("product " + m.getDatabaseProductName() + " " + m.getDatabaseMajorVersion());
            try (ResultSet r = m.getSchemas()) {
                while (r.next()) System.out.println("schema " + r.getString("TABLE_SCHEM"));
            }
            try (ResultSet r = m.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) {
                    System.out.println("table " + r.getString("TABLE_NAME") + " " + r.getString("TABLE_TYPE")
                        + " remarks=" + (r.getString("REMARKS") != null));
                }
            }
            try (ResultSet r = m.getColumns(null, "public", "samples", "%")) {
                while (r.next()) {
                    System.out.println("column " + r.getInt("ORDINAL_POSITION") + " " + r.getString("COLUMN_NAME")
                        + " " + r.getInt("DATA_TYPE") + " " + r.getString("TYPE_NAME") + " " + r.getString("IS_NULLABLE"));
                }
            }
            try (PreparedStatement s = c.prepareStatement("SELECT count(*) AS n FROM samples WHERE metric = ?")) {
                s.setString(1, "heart_rate");
                try (ResultSet r = s.executeQuery()) {
                    while (r.next()) System.out.println("count " + r.getLong("n"));
                }
            }
        }
    }
}
